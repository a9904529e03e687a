"""Embedded real data: scikit-learn's digits as a Lightly-shaped self-supervised data set.

``sklearn.datasets.load_digits()`` ships 1,797 real 8x8 grayscale images of handwritten digits
(10 classes) inside scikit-learn: nothing is downloaded. :func:`digits_dataset` serves them as
Lightly's data sets do, ``(views, label)`` with ``views`` a list of augmented views, so that a
batch is ``(views, labels)`` and ``batch[0]`` is the list of view batches, as in Lightly's
examples. The augmentations suit small grayscale digits (crops, small rotations, contrast,
noise; no flips: a flipped digit is another symbol).

Example:
    >>> from torch.utils.data import DataLoader
    >>> dataset = digits_dataset()  # two augmented views per image
    >>> (x0, x1), labels = next(iter(DataLoader(dataset, batch_size=128, shuffle=True)))
    >>> x0.shape
    torch.Size([128, 1, 8, 8])
    >>> plain = digits_dataset(views=0)  # normalised images, no augmentation (evaluation)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from lightly.transforms.multi_view_transform import MultiViewTransform
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lightly_temperature._validation import check_int

#: Mean and standard deviation of the digits' pixels scaled to [0, 1].
DIGITS_MEAN = 0.305
DIGITS_STD = 0.376


class TensorImageDataset(Dataset):
    """Images held in one tensor ``(N, C, H, W)`` with labels, each image passed through
    ``transform``; items are ``(transform(image), label)`` like Lightly's data sets."""

    def __init__(
        self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Any] | None = None
    ) -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


def load_digits_tensors(channels: int = 1) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as float images in [0, 1], shape ``(N, channels, 8, 8)``, and labels."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    from sklearn.datasets import load_digits  # scikit-learn is an optional dependency

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    return images.expand(-1, channels, -1, -1).contiguous(), torch.as_tensor(digits.target)


def digits_transform(input_size: int = 8, augment: bool = True) -> Callable[[Tensor], Tensor]:
    """One augmented view of a digit tensor (``augment=False``: resize and normalise only)."""
    check_int(input_size, "input_size", minimum=4)
    normalize = v2.Normalize([DIGITS_MEAN], [DIGITS_STD])
    if not augment:
        resize = [v2.Resize(input_size, antialias=True)] if input_size != 8 else []
        return v2.Compose([*resize, normalize])
    return v2.Compose(
        [
            v2.RandomResizedCrop(input_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomRotation(10),
            v2.ColorJitter(brightness=0.4, contrast=0.4),
            v2.GaussianNoise(sigma=0.05),
            normalize,
        ]
    )


def digits_dataset(
    views: int = 2,
    indices: Sequence[int] | None = None,
    input_size: int = 8,
    channels: int = 1,
    transform: Callable[[Tensor], Any] | None = None,
) -> TensorImageDataset:
    """scikit-learn's digits as a Lightly-shaped data set of ``(views, label)`` items.

    Args:
        views: number of augmented views per item (a list); ``0`` gives the normalised image
            itself (a tensor, no augmentation), for evaluation and kNN banks.
        indices: keep only these images (a train/test split); default all 1,797.
        input_size: side of the returned images (8 = native; 32 suits ResNets).
        channels: 1 (grayscale) or 3 (the gray channel repeated, for RGB backbones).
        transform: replaces the default transform (gets a ``(channels, 8, 8)`` tensor in [0, 1]).
    """
    check_int(views, "views", minimum=0)
    images, labels = load_digits_tensors(channels)
    if indices is not None:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if index.numel() == 0 or index.min() < 0 or index.max() >= images.shape[0]:
            raise ValueError(
                f"indices must be a non-empty sequence of ints in [0, {images.shape[0]}), "
                f"got {len(index)} indices"
                + (f" in [{int(index.min())}, {int(index.max())}]" if index.numel() else "")
            )
        images, labels = images[index], labels[index]
    if transform is None:
        if views == 0:
            transform = digits_transform(input_size, augment=False)
        else:
            transform = MultiViewTransform([digits_transform(input_size) for _ in range(views)])
    return TensorImageDataset(images, labels, transform)
