"""Every bad argument raises ValueError naming the argument and its value."""

from __future__ import annotations

import pytest
import torch

from lightly_temperature import (
    HardContrastiveLoss,
    HardSimpleLoss,
    SimpleLoss,
    contrastive_loss,
    relative_penalties,
    simple_loss,
)

CLASSES = [HardContrastiveLoss, SimpleLoss, HardSimpleLoss]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("temperature", [0.0, -0.5, float("nan"), float("inf"), "0.5", True])
def test_bad_temperature_in_constructor(cls, temperature):
    with pytest.raises(ValueError, match=r"temperature.*" + repr(temperature)[:3]):
        cls(temperature=temperature)


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_temperature_set_between_steps(cls):
    loss_fn = cls()
    with pytest.raises(ValueError, match=r"temperature.*-1"):
        loss_fn.temperature = -1.0
    loss_fn.temperature = 0.2  # a valid change is accepted
    assert loss_fn.temperature == 0.2


@pytest.mark.parametrize("cls", [HardContrastiveLoss, HardSimpleLoss])
@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (0, r"hard_negatives.*>= 1.*0"),
        (-3, r"hard_negatives.*-3"),
        (0.0, r"hard_negatives.*0\.0"),
        (1.5, r"hard_negatives.*1\.5"),
        (-0.1, r"hard_negatives.*-0\.1"),
        (float("nan"), r"hard_negatives.*nan"),
        (True, r"hard_negatives.*True"),
        ("4", r"hard_negatives.*'4'"),
    ],
)
def test_bad_hard_negatives(cls, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(hard_negatives=value)


def test_bad_hard_negatives_in_functional_core():
    pos, neg = torch.zeros(2), torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"hard_negatives.*0"):
        contrastive_loss(pos, neg, 0.5, hard_negatives=0)
    with pytest.raises(ValueError, match=r"hard_negatives.*2\.0"):
        simple_loss(pos, neg, hard_negatives=2.0)
    with pytest.raises(ValueError, match=r"temperature.*0"):
        relative_penalties(neg, 0)
    with pytest.raises(ValueError, match=r"negatives.*\(3, 3\)"):
        contrastive_loss(pos, torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match=r"reduction.*'avg'"):
        contrastive_loss(pos, neg, 0.5, reduction="avg")


@pytest.mark.parametrize("cls", CLASSES)
def test_out0_out1_shapes(cls):
    loss_fn = cls()
    with pytest.raises(
        ValueError, match=r"out0 and out1 must have the same shape.*\(4, 8\).*\(5, 8\)"
    ):
        loss_fn(torch.randn(4, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"out0 must be 2-D.*\(4, 8, 2\)"):
        loss_fn(torch.randn(4, 8, 2), torch.randn(4, 8, 2))
    with pytest.raises(ValueError, match=r"out1 must be 2-D.*\(4,\)"):
        loss_fn(torch.randn(4, 8), torch.randn(4))


@pytest.mark.parametrize("cls", CLASSES)
def test_memory_bank_dim_mismatch(cls):
    loss_fn = cls(memory_bank_size=(32, 16))
    with pytest.raises(ValueError, match=r"memory_bank_size=\(32, 16\).*16-d.*8-d"):
        loss_fn(torch.randn(4, 8), torch.randn(4, 8))


@pytest.mark.parametrize("cls", CLASSES)
def test_memory_bank_size_as_plain_int_is_rejected_like_lightly(cls):
    with pytest.raises(ValueError, match="size=4096"):
        cls(memory_bank_size=4096)


def test_bad_negative_weight():
    with pytest.raises(ValueError, match=r"negative_weight.*-1"):
        SimpleLoss(negative_weight=-1.0)
