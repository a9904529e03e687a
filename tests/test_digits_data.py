"""The embedded digits data set, served the way Lightly's data sets serve images."""

import pytest
import torch
from lightly.data import LightlyDataset
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader

from lightly_temperature.data import (
    DIGITS_MEAN,
    DIGITS_STD,
    TensorImageDataset,
    digits_dataset,
    load_digits_tensors,
)


def test_raw_tensors_are_the_real_digits():
    images, labels = load_digits_tensors()
    digits = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.tolist() == digits.target.tolist()
    torch.testing.assert_close(images[:, 0] * 16, torch.as_tensor(digits.images).float())
    torch.testing.assert_close(images.mean(), torch.tensor(DIGITS_MEAN), atol=1e-3, rtol=0)
    torch.testing.assert_close(images.std(), torch.tensor(DIGITS_STD), atol=1e-3, rtol=0)
    rgb, _ = load_digits_tensors(channels=3)
    assert rgb.shape == (1797, 3, 8, 8) and torch.equal(rgb[:, 2], images[:, 0])


def test_batches_are_lightly_shaped_with_two_different_views():
    torch.manual_seed(0)
    (x0, x1), labels = next(iter(DataLoader(digits_dataset(), batch_size=64)))
    assert x0.shape == x1.shape == (64, 1, 8, 8) and labels.shape == (64,)
    assert not torch.equal(x0, x1)  # two independent augmentations
    # LightlyDataset wraps it like any torch data set: (views, label, filename)
    views, label, filename = LightlyDataset.from_torch_dataset(digits_dataset())[3]
    assert len(views) == 2 and int(label) == 3 and isinstance(filename, str)


def test_plain_views_splits_and_sizes():
    images, labels = load_digits_tensors()
    plain = digits_dataset(views=0, indices=[5, 7])
    image, label = plain[1]
    torch.testing.assert_close(image, (images[7] - DIGITS_MEAN) / DIGITS_STD)
    assert len(plain) == 2 and label == labels[7]
    views, _ = digits_dataset(views=3, input_size=32, channels=3)[0]
    assert len(views) == 3 and all(v.shape == (3, 32, 32) for v in views)
    assert digits_dataset(views=0, input_size=16)[0][0].shape == (1, 16, 16)
    identity = digits_dataset(transform=lambda x: x)
    assert torch.equal(identity[0][0], images[0])


def test_errors():
    with pytest.raises(ValueError, match="views must be an int >= 0, got -1"):
        digits_dataset(views=-1)
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        digits_dataset(channels=2)
    with pytest.raises(ValueError, match="input_size must be an int >= 4, got 2"):
        digits_dataset(input_size=2)
    with pytest.raises(
        ValueError,
        match=r"indices must be .* in \[0, 1797\), got 1 indices "
        r"in \[1797, 1797\]",
    ):
        digits_dataset(indices=[1797])
    with pytest.raises(ValueError, match="got 0 indices"):
        digits_dataset(indices=[])
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        TensorImageDataset(torch.zeros(3, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\), got \(4,\)"):
        TensorImageDataset(torch.zeros(3, 1, 8, 8), torch.zeros(4))
