"""Sample indices from the data set to the loss: IndexedDataset, the ready modules, checks."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import NTXentLoss
from torch import nn
from torch.utils.data import DataLoader

from lightly_temperature import HardContrastiveLoss, IndexedDataset, SimCLR, loss_capabilities
from lightly_temperature.data import digits_dataset
from lightly_temperature.models._base import call_loss, sample_indices
from lightly_temperature.models.backbones import SmallCNN


def test_indexed_dataset_items_and_batches_carry_their_index():
    dataset = IndexedDataset(digits_dataset())
    (x0, x1), label, index = dataset[7]
    assert index == 7 and x0.shape == x1.shape
    loader = DataLoader(
        dataset, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    views, labels, indices = next(iter(loader))
    assert indices.dtype == torch.long and indices.shape == (5,)
    all_labels = dataset.dataset.labels
    assert torch.equal(labels, all_labels[indices])
    assert sample_indices((views, labels, indices)) is indices
    assert sample_indices((views, labels, ["a.png"] * 5)) is None
    assert sample_indices((views, labels)) is None


def test_indexed_dataset_rejects_what_is_not_a_data_set():
    with pytest.raises(ValueError, match="dataset must be a map-style"):
        IndexedDataset(iter([1, 2]))


class RecordIndices(nn.Module):
    capabilities = loss_capabilities(HardContrastiveLoss)

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def forward(self, out0, out1, indices=None):
        self.seen.append(indices)
        return (out0 * out1).sum()


def test_modules_pass_indices_only_to_losses_that_take_them():
    z = torch.randn(4, 3)
    idx = torch.arange(4)
    recorder = RecordIndices()
    call_loss(recorder, z, z, ([z, z], idx, idx))
    assert recorder.seen[-1] is idx
    # Lightly's NTXentLoss takes no indices: called as Lightly calls it.
    assert not loss_capabilities(NTXentLoss()).sample_indices
    call_loss(NTXentLoss(), z, z, ([z, z], idx, idx))
    # A SimCLR module trained on an indexed batch hands the indices to its loss.
    model = SimCLR(backbone=SmallCNN(), feature_dim=None, loss=recorder)
    batch = next(iter(DataLoader(IndexedDataset(digits_dataset()), batch_size=6)))
    model.training_step(batch, 0)
    assert torch.equal(recorder.seen[-1], torch.arange(6))


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        (torch.tensor([0.0, 1.0]), "integer tensor"),
        (torch.tensor([0, 1, 2]), r"shape \(2,\)"),
        ([0, 1], "tensor of sample indices"),
    ],
)
def test_bad_indices_are_rejected_by_the_loss(indices, match):
    loss = HardContrastiveLoss()
    with pytest.raises(ValueError, match=match):
        loss(torch.randn(2, 4), torch.randn(2, 4), indices=indices)


def test_indices_do_not_change_a_loss_that_is_not_indexed_by_sample():
    torch.manual_seed(0)
    z0, z1 = torch.randn(8, 5), torch.randn(8, 5)
    loss = HardContrastiveLoss(hard_negatives=None, temperature=0.3)
    assert torch.equal(loss(z0, z1), loss(z0, z1, indices=torch.arange(8)))
