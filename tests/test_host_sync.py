"""No host synchronisation in the per-step paths, checked on the CPU.

The losses' forward and backward and the hardness monitor's per-step statistics must never make
the host wait for a GPU (``benchmarks/gpu_check.py`` proves it there with
``torch.cuda.set_sync_debug_mode("error")``). Here the package takes its device paths for CPU
tensors and a dispatch mode records every operation that would synchronise on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from lightly_temperature import (
    DebiasedContrastiveLoss,
    DecoupledContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    SimpleLoss,
    hardness_statistics,
)
from lightly_temperature.temperature import (
    AdaptiveTemperature,
    CosineTemperature,
    LearnableTemperature,
)
from tests._host_sync import HostSyncRecorder, run_device_paths_on_cpu


def test_the_recorder_finds_each_kind_of_synchronisation():
    x = torch.randn(6)
    cases = {
        "aten._local_scalar_dense": lambda: x.sum().item(),
        "aten.lift_fresh": lambda: x.new_tensor(0.2),
        "aten.nonzero": lambda: x.nonzero(),
        "aten.index": lambda: x[x > 0],
    }
    for name, operation in cases.items():
        with HostSyncRecorder() as recorder:
            operation()
        assert any(found.startswith(name) for found in recorder.found), name
    with HostSyncRecorder() as recorder:
        torch.full((), 0.2).mul(x).topk(2, sorted=False).values.exp().sum()
    assert recorder.found == []


LOSSES = {
    "all negatives": lambda bank: HardContrastiveLoss(0.2, bank, hard_negatives=None),
    "top-K": lambda bank: HardContrastiveLoss(0.2, bank, hard_negatives=0.25),
    # C - 1 of the C negatives: 2N - 2 = 22 in SimCLR, the 64 entries of the bank in MoCo
    "top-K, K = C - 1": lambda bank: HardContrastiveLoss(0.2, bank, False, 63 if bank else 21),
    "simple": lambda bank: SimpleLoss(0.2, bank),
    "hard simple, K > C/2": lambda bank: HardSimpleLoss(0.2, bank, hard_negatives=0.75),
    "HCL top-K": lambda bank: HCLLoss(0.5, 1.0, 0.1, bank, hard_negatives=0.25),
    "debiased": lambda bank: DebiasedContrastiveLoss(0.5, 0.1, bank),
    "cosine policy": lambda bank: HardContrastiveLoss(CosineTemperature(), bank, False, 0.25),
    "learnable τ": lambda bank: HardContrastiveLoss(LearnableTemperature(), bank, False, None),
    "adaptive τ": lambda bank: HardContrastiveLoss(AdaptiveTemperature(), bank, False, 0.25),
}


@pytest.mark.parametrize("bank", [0, (64, 16)], ids=["SimCLR", "MoCo"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_a_training_step_of_each_loss_takes_no_host_synchronisation(monkeypatch, name, bank):
    run_device_paths_on_cpu(monkeypatch)
    loss_fn = LOSSES[name](bank)
    for _ in range(2):  # the second call over a bank written by the first
        out0 = torch.randn(12, 16, requires_grad=True)
        out1 = torch.randn(12, 16, requires_grad=True)
        with HostSyncRecorder() as recorder:
            loss = loss_fn(out0, out1)
            loss.backward()
            statistics = hardness_statistics(
                loss_fn.similarities(out0, out1), loss_fn.selection.hard_negatives
            )
        assert recorder.found == [], recorder.found
        assert out0.grad is not None and len(statistics) >= 7


def test_the_decoupled_loss_takes_no_host_synchronisation(monkeypatch):
    run_device_paths_on_cpu(monkeypatch)
    out0 = torch.randn(12, 16, requires_grad=True)
    with HostSyncRecorder() as recorder:
        DecoupledContrastiveLoss(0.2, 0.5)(out0, torch.randn(12, 16)).backward()
    assert recorder.found == []
