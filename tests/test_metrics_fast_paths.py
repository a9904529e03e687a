"""The metrics' fast paths against the direct computations they replace."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature.metrics import (
    positive_and_top_negative_similarities,
    similarities,
    uniformity_loss,
)
from lightly_temperature.metrics.similarities import _top_k_values
from tests._host_sync import HostSyncRecorder, run_device_paths_on_cpu


@pytest.mark.parametrize("device_path", [False, True], ids=["host", "device"])
@pytest.mark.parametrize(
    "width, k", [(80, 10), (1003, 10), (4099, 3), (650, 1), (30, 10), (8200, 2), (4100, 1)]
)
def test_grouped_top_k_equals_topk(monkeypatch, width, k, device_path):
    # Host: runs of 32 consecutive entries (64 from width / k = 4096 on); device: interleaved
    # groups of about sqrt(width / k). Left-over columns, ties, the k largest in one run.
    if device_path:
        run_device_paths_on_cpu(monkeypatch)
    calls = []
    for name in ("_group_maxima", "_run_maxima"):
        real = getattr(similarities, name)
        spy = lambda *a, name=name, real=real, **kw: calls.append(name) or real(*a, **kw)  # noqa: E731
        monkeypatch.setattr(similarities, name, spy)
    g = torch.Generator().manual_seed(width)
    sims = torch.rand(17, width, generator=g) * 2 - 1
    sims[:, 5] = float("-inf")
    sims[3, -1] = 5.0  # the largest entry in the left-over columns
    sims[4] = sims[4].round(decimals=1)  # many ties
    if width >= 80:
        sims[5, 64:74] = 3.0 + torch.arange(10.0)  # the largest entries all in one run
    got = _top_k_values(sims, k, sorted=True)
    torch.testing.assert_close(got, sims.topk(k, dim=1).values, rtol=0, atol=0)
    assert set(calls) <= {"_group_maxima" if device_path else "_run_maxima"}
    if width >= 1003:  # enough sets for the grouped selection to run
        assert calls


@pytest.mark.parametrize(
    "n, k, chunk, case",
    [
        (300, 10, 64, "random"),
        (257, 1, 50, "random"),
        (300, 37, 100, "random"),
        (300, 10, 64, "many ties"),
        (300, 10, 300, "random"),
    ],
)
def test_pruned_top_negatives_equal_a_float64_reference(monkeypatch, n, k, chunk, case):
    # On the CPU with k <= N / 8, a block's entries enter a row's k largest only past its bar.
    g = torch.Generator().manual_seed(n + k)
    z0, z1 = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    if case == "many ties":  # duplicated samples and coarse directions
        z0, z1 = z0.round(), z1.round()
        z0[z0.norm(dim=1) == 0] = 1.0
        z1[z1.norm(dim=1) == 0] = 1.0
        z0[::3] = z0[1::3][: len(z0[::3])] if n % 3 == 0 else z0[::3]
    calls = []
    real = similarities._raise_bar
    monkeypatch.setattr(
        similarities, "_raise_bar", lambda *a, **kw: calls.append(1) or real(*a, **kw)
    )
    pos, neg = positive_and_top_negative_similarities(z0, z1, k=k, chunk_size=chunk)
    assert calls  # the pruned path ran
    a = torch.nn.functional.normalize(z0.double(), dim=1)
    b = torch.nn.functional.normalize(z1.double(), dim=1)
    sims = torch.cat([a @ a.T, a @ b.T], dim=1)
    rows = torch.arange(n)
    sims[rows, rows] = float("-inf")  # the anchor itself
    sims[rows, rows + n] = float("-inf")  # its positive
    expected = sims.topk(k, dim=1).values
    torch.testing.assert_close(neg.double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(pos.double(), (a * b).sum(1), rtol=0, atol=1e-6)
    # The device path (each row block against all candidates) selects the same values.
    run_device_paths_on_cpu(monkeypatch)
    with HostSyncRecorder() as recorder:
        device_pos, device_neg = positive_and_top_negative_similarities(
            z0, z1, k=k, chunk_size=chunk
        )
    assert recorder.found == []
    torch.testing.assert_close(device_neg.double(), expected, rtol=0, atol=1e-6)
    assert torch.equal(device_pos, pos)


@pytest.mark.parametrize(
    "n, k, chunk",
    [
        (40, 10, 7),
        (300, 200, 64),
        (2, 1, 1),
        (33, 64, 5),
        (40, 78, 40),  # k = 2N - 2: every negative; one block
        (100, 10, 3),  # blocks of fewer rows than k
    ],
)
def test_top_negatives_by_row_block_equal_a_float64_reference(n, k, chunk):
    # The path for a k above N / 8 on the CPU (and every k on a GPU).
    g = torch.Generator().manual_seed(n + k)
    z0, z1 = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)
    pos, neg = positive_and_top_negative_similarities(z0, z1, k=k, chunk_size=chunk)
    a = torch.nn.functional.normalize(z0.double(), dim=1)
    b = torch.nn.functional.normalize(z1.double(), dim=1)
    sims = torch.cat([a @ a.T, a @ b.T], dim=1)
    rows = torch.arange(n)
    sims[rows, rows] = sims[rows, rows + n] = float("-inf")
    torch.testing.assert_close(neg.double(), sims.topk(k, dim=1).values, rtol=0, atol=1e-6)
    torch.testing.assert_close(pos.double(), (a * b).sum(1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_uniformity_loss_equals_the_direct_log_mean_exp(chunk):
    z = torch.randn(150, 12, generator=torch.Generator().manual_seed(chunk), dtype=torch.float64)
    zn = torch.nn.functional.normalize(z, dim=1)
    sq = torch.cdist(zn, zn).pow(2)
    off = ~torch.eye(150, dtype=torch.bool)
    expected = sq[off].mul(-2.0).exp().mean().log()
    got = uniformity_loss(z, chunk_size=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 64, 150])
def test_uniformity_loss_on_the_device_path_equals_the_direct_log_mean_exp(monkeypatch, chunk):
    # On a GPU each row block meets all the columns from its diagonal on in one product.
    z = torch.randn(150, 12, generator=torch.Generator().manual_seed(chunk), dtype=torch.float64)
    zn = torch.nn.functional.normalize(z, dim=1)
    off = ~torch.eye(150, dtype=torch.bool)
    expected = torch.cdist(zn, zn).pow(2)[off].mul(-2.0).exp().mean().log()
    run_device_paths_on_cpu(monkeypatch)
    with HostSyncRecorder() as recorder:
        got = uniformity_loss(z, chunk_size=chunk)
    # The check for rows without a direction reads one count back, before the blocks.
    assert [found.split(" ")[0] for found in recorder.found] == ["aten._local_scalar_dense"]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
