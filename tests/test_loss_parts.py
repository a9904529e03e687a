"""A loss is its parts (layout, selection, reduction, temperature); its class declares them."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import nn

from lightly_temperature import (
    HardContrastiveLoss,
    HardSimpleLoss,
    LossCapabilities,
    SimpleLoss,
    available_losses,
    loss_capabilities,
)
from lightly_temperature.losses import (
    AllNegatives,
    LinearReduction,
    LogSumExpReduction,
    PairwiseLoss,
    TopKNegatives,
)


def test_selection_resolves_k_or_alpha_against_the_negatives_available():
    assert TopKNegatives(0.0819).num_selected(50_000) == 4095  # the paper's CIFAR setting
    assert TopKNegatives(5).num_selected(100) == 5
    assert TopKNegatives(500).num_selected(100) is None  # clamped: every negative, no selection
    assert TopKNegatives(1.0).num_selected(100) is None
    assert TopKNegatives(1e-6).num_selected(100) == 1  # at least one
    assert AllNegatives().num_selected(100) is None
    for bad in (0, -3, 1.5, 0.0, float("nan"), True, "5"):
        with pytest.raises(ValueError, match="hard_negatives"):
            TopKNegatives(bad)


def test_hard_negatives_attribute_is_the_selection():
    loss_fn = HardContrastiveLoss(hard_negatives=7)
    assert isinstance(loss_fn.selection, TopKNegatives) and loss_fn.hard_negatives == 7
    loss_fn.hard_negatives = None
    assert isinstance(loss_fn.selection, AllNegatives) and loss_fn.hard_negatives is None
    with pytest.raises(ValueError, match="hard_negatives.*-1"):
        loss_fn.hard_negatives = -1


@pytest.mark.parametrize("bank", [0, (30, 8)])
def test_named_losses_are_configurations_of_the_parts(bank):
    torch.manual_seed(0)
    out0, out1 = torch.randn(6, 8), torch.randn(6, 8)
    pairs = [
        (HardContrastiveLoss(0.3, bank, hard_negatives=4), LogSumExpReduction(), 4, 0.3),
        (SimpleLoss(2.0, bank), LinearReduction(), None, 2.0),
        (HardSimpleLoss(1.0, bank, hard_negatives=4), LinearReduction(), 4, 1.0),
    ]
    for named, reduction, k, tau in pairs:
        composed = PairwiseLoss(reduction, k, tau, memory_bank_size=bank)
        if bank:
            composed.memory_bank.bank.copy_(named.memory_bank.bank)
        assert torch.equal(named(out0, out1), composed(out0, out1))


def test_each_class_declares_what_its_temperature_means():
    """softmax_temperature=False means: tau only rescales the loss. Checked on the maths."""
    torch.manual_seed(0)
    out0, out1 = torch.randn(6, 8), torch.randn(6, 8)
    for cls in (HardContrastiveLoss, SimpleLoss, HardSimpleLoss):
        at_1 = cls(temperature=1.0)(out0, out1)
        at_4 = cls(temperature=4.0)(out0, out1)
        only_rescales = torch.allclose(at_4 * 4.0, at_1, rtol=1e-5)
        assert cls.capabilities.softmax_temperature == (not only_rescales), cls.__name__
        reduction = cls().reduction
        assert isinstance(reduction, LogSumExpReduction) == cls.capabilities.softmax_temperature
        assert cls.capabilities.hard_negatives == (
            "hard_negatives" in cls.__init__.__code__.co_varnames
        )


def test_capabilities_of_every_registered_loss_and_of_plugins():
    assert loss_capabilities("ntxent") == LossCapabilities(True, False, True, True)
    assert loss_capabilities(NTXentLoss()) == loss_capabilities("ntxent")
    assert loss_capabilities("hard_contrastive") == LossCapabilities(
        True, True, True, True, True, True
    )
    assert loss_capabilities("simple") == LossCapabilities(False, False, True, True, True, True)
    assert loss_capabilities("hard_simple") == LossCapabilities(False, True, True, True, True, True)
    assert loss_capabilities(SimpleLoss()) == loss_capabilities("simple")
    assert loss_capabilities("hcl") == LossCapabilities(True, True, True, True, True, True)
    assert loss_capabilities("debiased") == LossCapabilities(True, False, True, True, True, True)
    assert loss_capabilities("contrastive") == LossCapabilities(True, False, True, True, True, True)
    # Lightly's DCL / DCLW gather but keep no memory bank; MACL does neither.
    assert loss_capabilities("dcl") == LossCapabilities(True, False, False, True)
    assert loss_capabilities("dclw") == LossCapabilities(True, False, False, True)
    assert loss_capabilities("macl") == LossCapabilities(True, False, False, False)
    assert set(available_losses()) >= {"ntxent", "hard_contrastive", "simple", "hard_simple"}

    class Plugin(nn.Module):  # a plugin without a declaration: read from its signature
        def __init__(self, temperature: float = 0.1, hard_negatives: int = 3) -> None:
            super().__init__()

    assert loss_capabilities(Plugin) == LossCapabilities(True, True, False, False)

    class IndexedPlugin(Plugin):  # its forward takes the batch's sample indices
        def forward(self, out0, out1, indices=None):
            return out0.sum()

    assert loss_capabilities(IndexedPlugin).sample_indices is True

    class Declared(Plugin):
        capabilities = LossCapabilities(softmax_temperature=False, hard_negatives=False)

    assert loss_capabilities(Declared).softmax_temperature is False


def test_use_loss_carries_what_the_new_class_declares():
    from lightly_temperature import register_loss, use_loss
    from lightly_temperature.registry import unregister_loss

    @register_loss("in_batch_only")
    class InBatchOnly(PairwiseLoss):  # takes the arguments, declares no memory bank
        capabilities = LossCapabilities(memory_bank=False)

        def __init__(self, temperature=0.5, memory_bank_size=0, gather_distributed=False):
            super().__init__(LogSumExpReduction(), None, temperature, memory_bank_size)

    class Holder(nn.Module):
        def __init__(self, criterion):
            super().__init__()
            self.criterion = criterion

    try:
        switched = use_loss(Holder(NTXentLoss(temperature=0.2)), "in_batch_only").criterion
        assert type(switched) is InBatchOnly and switched.temperature == 0.2
        with pytest.raises(ValueError, match="uses a memory bank of size \\(16, 8\\)"):
            use_loss(Holder(NTXentLoss(memory_bank_size=(16, 8))), "in_batch_only")
    finally:
        unregister_loss("in_batch_only")
