"""The embedded digits, served the way Lightly's data sets serve images, augmented per batch."""

import pytest
import torch
from lightly.data import LightlyDataset
from sklearn.datasets import load_digits
from torch.nn import functional as F
from torch.utils.data import DataLoader, Subset

from lightly_temperature.data import (
    DigitsAugment,
    DigitsViews,
    digits_dataset,
    load_digits_tensors,
)


def test_raw_tensors_are_the_real_digits():
    images, labels = load_digits_tensors()
    digits = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.tolist() == digits.target.tolist()
    torch.testing.assert_close(images[:, 0] * 16, torch.as_tensor(digits.images).float())
    rgb, _ = load_digits_tensors(channels=3)
    assert rgb.shape == (1797, 3, 8, 8) and torch.equal(rgb[:, 2], images[:, 0])


def test_batches_are_lightly_shaped_with_two_different_views():
    torch.manual_seed(0)
    (x0, x1), labels = next(iter(DataLoader(digits_dataset(), batch_size=64)))
    assert x0.shape == x1.shape == (64, 1, 8, 8) and labels.shape == (64,)
    assert labels.dtype == torch.int64 and labels.tolist() == load_digits().target[:64].tolist()
    assert not torch.equal(x0, x1)  # two independent augmentations
    # LightlyDataset wraps it like any torch data set: (views, label, filename)
    views, label, filename = LightlyDataset.from_torch_dataset(digits_dataset())[3]
    assert len(views) == 2 and int(label) == 3 and isinstance(filename, str)


def test_a_loader_batch_is_one_batched_augmentation_per_view():
    # What the DataLoader fetches (__getitems__) is DigitsAugment on the stacked batch, the
    # draws of view 0 then view 1: the same tensors as augmenting the batch by hand.
    images, _ = load_digits_tensors()
    # (the loader's own seed comes from its generator, not from torch's global RNG)
    loader = DataLoader(
        Subset(digits_dataset(), range(100, 164)), batch_size=32, generator=torch.Generator()
    )
    torch.manual_seed(3)
    batches = list(loader)
    torch.manual_seed(3)
    augment = DigitsAugment()
    for start, ((x0, x1), _) in zip((100, 132), batches):
        chunk = images[start : start + 32]
        assert torch.equal(x0, augment(chunk)) and torch.equal(x1, augment(chunk))


def test_one_item_is_augmented_alone_with_the_same_law():
    images, labels = load_digits_tensors()
    dataset = digits_dataset(indices=[5, 7])
    torch.manual_seed(1)
    (v0, v1), label = dataset[1]
    torch.manual_seed(1)
    augment = DigitsAugment()
    assert torch.equal(v0, augment(images[7:8])[0]) and torch.equal(v1, augment(images[7:8])[0])
    assert label == labels[7] and dataset[-1][1] == labels[7]
    with pytest.raises(IndexError, match="index 2 out of range for 2 images"):
        dataset[2]


def test_augmented_views_stay_closer_to_their_image_than_to_others():
    images, _ = load_digits_tensors()
    images = images[:256]
    torch.manual_seed(0)
    views = DigitsAugment()(images)
    assert views.shape == images.shape and torch.isfinite(views).all()
    flat_v, flat_x = F.normalize(views.flatten(1), dim=1), F.normalize(images.flatten(1), dim=1)
    sims = flat_v @ flat_x.T
    assert sims.diagonal().mean() < 0.95  # the views change the image
    assert sims.diagonal().mean() > sims.mean() + 0.1


def test_plain_images_splits_and_per_view_augmentations():
    images, labels = load_digits_tensors()
    plain = digits_dataset(views=0, indices=[5, 7])
    image, label = plain[1]
    assert torch.equal(image, images[7]) and len(plain) == 2 and label == labels[7]
    (x0, x1, x2), _ = digits_dataset(views=3)[0]
    assert x0.shape == x1.shape == x2.shape == (1, 8, 8)
    fixed = digits_dataset(indices=[4], augment=[lambda x: x, lambda x: x.flip(-1)])
    (x0, x1), _ = fixed[0]
    assert torch.equal(x0, images[4]) and torch.equal(x1, images[4].flip(-1))


def test_errors():
    with pytest.raises(ValueError, match="views must be an int >= 0, got -1"):
        digits_dataset(views=-1)
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        load_digits_tensors(channels=2)
    with pytest.raises(ValueError, match="augment must be a callable or a sequence of 2 callables"):
        digits_dataset(augment=[lambda x: x])
    with pytest.raises(
        ValueError,
        match=r"indices must be .* in \[0, 1797\), got 1 indices "
        r"in \[1797, 1797\]",
    ):
        digits_dataset(indices=[1797])
    with pytest.raises(ValueError, match="got 0 indices"):
        digits_dataset(indices=[])
    with pytest.raises(
        ValueError, match=r"images must be a \(N, C, H, W\) tensor, got \(3, 8, 8\)"
    ):
        DigitsViews(torch.zeros(3, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\), got \(4,\)"):
        DigitsViews(torch.zeros(3, 1, 8, 8), torch.zeros(4))


def test_seeded_items_equal_each_item_drawn_under_its_own_seed():
    """The probe's batched path: per-image seeds, one batched augmentation, the same views."""
    images, labels = load_digits_tensors()
    datasets = [
        DigitsViews(images[:40], labels[:40], views=2),
        DigitsViews(images[:40], labels[:40], views=2, augment=lambda x: x + torch.randn_like(x)),
    ]
    indices, seeds = [3, 17, 5, 39], [10, 11, 12, 99]
    for dataset in datasets:
        state = torch.random.get_rng_state()
        batch = dataset.seeded_items(indices, seeds)
        assert torch.equal(torch.random.get_rng_state(), state)
        for (views, label), index, seed in zip(batch, indices, seeds):
            torch.manual_seed(seed)
            (alone0, alone1), alone_label = dataset[index]
            assert torch.equal(views[0], alone0) and torch.equal(views[1], alone1)
            assert label == alone_label
        assert not torch.equal(batch[0][0][0], batch[0][0][1])  # two different views
