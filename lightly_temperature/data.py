"""Embedded real data: scikit-learn's digits as a Lightly-shaped self-supervised data set.

``sklearn.datasets.load_digits()`` ships 1,797 real 8x8 grayscale images of handwritten digits
(10 classes) inside scikit-learn: nothing is downloaded. :func:`digits_dataset` serves them as
Lightly's data sets do, ``(views, label)`` with ``views`` a list of augmented views, so that a
batch is ``(views, labels)`` and ``batch[0]`` is the list of view batches, as in Lightly's
examples.

The augmentation, :class:`DigitsAugment`, works on whole batches: a ``DataLoader`` fetches a
batch of :class:`DigitsViews` through its ``__getitems__`` and augments it at once (about 30x
faster than one image at a time on a CPU). Indexing one item augments that image alone with the
same random law, so per-sample seeding (as :class:`~lightly_temperature.TemperatureAnalysis`
does for its probe) and ``LightlyDataset.from_torch_dataset`` work as with any data set.

Example:
    >>> from torch.utils.data import DataLoader
    >>> dataset = digits_dataset()  # two augmented views per image
    >>> (x0, x1), labels = next(iter(DataLoader(dataset, batch_size=128, shuffle=True)))
    >>> x0.shape
    torch.Size([128, 1, 8, 8])
    >>> plain = digits_dataset(views=0)  # the images in [0, 1], no augmentation (evaluation)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from lightly_temperature._validation import check_int

#: A batched augmentation: ``(N, C, H, W) -> (N, C, H, W)``, one random draw per image.
BatchAugment = Callable[[Tensor], Tensor]


class DigitsAugment(nn.Module):
    """Batched augmentations for small grayscale images (scikit-learn's 8x8 digits).

    Each image gets its own random affine warp (rotation, scale, shear, translation; no flips:
    a flipped digit is another digit), a random contrast/brightness change, Gaussian pixel noise
    and, with probability ``erase_prob``, a random square cut out. Runs on the images' device
    and draws from torch's default random generator.

    Example:
        >>> augment = DigitsAugment()
        >>> view0, view1 = augment(images), augment(images)  # images: (N, 1, 8, 8) in [0, 1]
    """

    def __init__(
        self,
        degrees: float = 15.0,
        scale: tuple[float, float] = (0.85, 1.15),
        shear: float = 0.15,
        translate: float = 0.15,
        contrast: tuple[float, float] = (0.6, 1.4),
        noise: float = 0.1,
        erase_prob: float = 0.5,
        erase_size: int = 3,
    ) -> None:
        super().__init__()
        self.degrees = degrees
        self.scale = scale
        self.shear = shear
        self.translate = translate
        self.contrast = contrast
        self.noise = noise
        self.erase_prob = erase_prob
        self.erase_size = erase_size

    def draw(
        self,
        shape: Sequence[int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """The random parameters of ``shape[0]`` images of ``shape`` ``(N, C, H, W)``, drawn
        from ``generator`` (default: torch's), in the order :meth:`forward` draws them."""
        n, _, h, w = shape

        def uniform(low: float, high: float) -> Tensor:
            return torch.empty(n, device=device, dtype=dtype).uniform_(
                low, high, generator=generator
            )

        params = {
            "angle": uniform(-self.degrees, self.degrees),
            "scale": uniform(*self.scale),
            "shear": uniform(-self.shear, self.shear),
            "shift_x": uniform(-self.translate, self.translate),
            "shift_y": uniform(-self.translate, self.translate),
            "gain": uniform(*self.contrast),
            "noise": torch.randn(tuple(shape), device=device, dtype=dtype, generator=generator),
        }
        if self.erase_prob > 0:
            size = self.erase_size
            params["top"] = torch.randint(0, h - size + 1, (n,), device=device, generator=generator)
            params["left"] = torch.randint(
                0, w - size + 1, (n,), device=device, generator=generator
            )
            params["erase"] = torch.rand(n, device=device, generator=generator) < self.erase_prob
        return params

    def apply(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The augmentation of ``images`` with the parameters :meth:`draw` gave."""
        n, _, h, w = images.shape
        angle = params["angle"] * (math.pi / 180.0)
        cos, sin = torch.cos(angle) / params["scale"], torch.sin(angle) / params["scale"]
        theta = torch.stack(
            [
                torch.stack([cos, -sin + params["shear"], params["shift_x"]], 1),
                torch.stack([sin, cos, params["shift_y"]], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        out = out * params["gain"].view(n, 1, 1, 1) + params["noise"] * self.noise
        if self.erase_prob > 0:
            ys = torch.arange(h, device=images.device).view(1, h, 1)
            xs = torch.arange(w, device=images.device).view(1, 1, w)
            top, left = params["top"].view(n, 1, 1), params["left"].view(n, 1, 1)
            inside = (ys >= top) & (ys < top + self.erase_size)
            inside = inside & (xs >= left) & (xs < left + self.erase_size)
            erase = inside & params["erase"].view(n, 1, 1)
            out = out.masked_fill(erase.unsqueeze(1), 0.0)
        return out

    def forward(self, images: Tensor) -> Tensor:
        return self.apply(images, self.draw(images.shape, images.device, images.dtype))


class DigitsViews(Dataset):
    """Images held in one tensor ``(N, C, H, W)`` with labels, served as Lightly's data sets
    serve them: ``([view0, view1, ...], label)``, or ``(image, label)`` with ``views=0``.

    A ``DataLoader`` fetches a batch through ``__getitems__``: the batch's images are augmented
    at once, each view by one call of its batched augmentation (one random draw per image).
    ``dataset[i]`` augments image ``i`` alone, with the same random law.

    Args:
        images: ``(N, C, H, W)`` float images.
        labels: ``(N,)`` integer labels.
        views: number of augmented views per item; 0 gives the image itself.
        augment: a batched augmentation for every view (default :class:`DigitsAugment`), or a
            sequence of ``views`` of them, one per view (as Lightly's ``MultiViewTransform``).

    Example:
        >>> images, labels = load_digits_tensors()
        >>> dataset = DigitsViews(images[:100], labels[:100], views=2)
        >>> (x0, x1), label = dataset[0]
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        views: int = 2,
        augment: BatchAugment | Sequence[BatchAugment] | None = None,
    ) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {shape}")
        if not isinstance(labels, Tensor) or labels.shape != (images.shape[0],):
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {shape}")
        check_int(views, "views", minimum=0)
        if augment is None:
            augment = DigitsAugment()
        if callable(augment):
            augments = [augment] * views
        else:
            augments = list(augment)
            if len(augments) != views or not all(callable(a) for a in augments):
                raise ValueError(
                    f"augment must be a callable or a sequence of {views} callables (one per "
                    f"view), got {augment!r}"
                )
        self.images = images
        self.labels = labels
        self.views = views
        self.augments = augments

    def __len__(self) -> int:
        return self.images.shape[0]

    def _items(self, index: Tensor | slice) -> list[tuple[Any, Tensor]]:
        images, labels = self.images[index], self.labels[index]
        if self.views == 0:
            return list(zip(images, labels))
        with torch.no_grad():
            views = [augment(images) for augment in self.augments]
        return [([view[i] for view in views], labels[i]) for i in range(images.shape[0])]

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        return self._items(slice(index, index + 1))[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Tensor]]:
        """The items of a whole batch, augmented at once (what a ``DataLoader`` calls)."""
        return self._items(torch.as_tensor(list(indices), dtype=torch.long))

    def seeded_items(
        self, indices: Sequence[int], seeds: Sequence[int]
    ) -> list[tuple[Any, Tensor]]:
        """``dataset[indices[i]]`` as drawn with torch's RNG seeded by ``seeds[i]``, for a
        whole batch at once: each image's random parameters come from its own seed (in the
        order ``dataset[i]`` draws them), the augmentation itself runs batched. What
        :func:`~lightly_temperature.probe.embed_probe` uses for its per-sample seeded views.
        """
        index = torch.as_tensor(list(indices), dtype=torch.long)
        images, labels = self.images[index], self.labels[index]
        if self.views == 0:
            return list(zip(images, labels))
        if not all(hasattr(a, "draw") and hasattr(a, "apply") for a in self.augments):
            items = []
            for i, seed in zip(indices, seeds):  # a plain callable: one image at a time
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(seed)
                    items.append(self[i])
            return items
        shape = (1, *images.shape[1:])
        draws: list[list[dict[str, Tensor]]] = [[] for _ in self.augments]
        for seed in seeds:
            generator = torch.Generator().manual_seed(seed)
            for view, augment in enumerate(self.augments):
                draws[view].append(augment.draw(shape, images.device, images.dtype, generator))
        with torch.no_grad():
            views = [
                augment.apply(
                    images, {key: torch.cat([d[key] for d in per_image]) for key in per_image[0]}
                )
                for augment, per_image in zip(self.augments, draws)
            ]
        return [([view[i] for view in views], labels[i]) for i in range(images.shape[0])]


class IndexedDataset(Dataset):
    """A data set whose items also carry their index: ``(views, label, index)``.

    A loss part indexed by sample (a memory bank with one entry per training sample, a
    temperature per sample) needs to know which samples a batch holds. Wrap any map-style
    data set whose items are ``(views, label, ...)`` (Lightly's ``LightlyDataset``, a
    torchvision data set with a two-view transform, :class:`DigitsViews`); the default
    collate turns the indices into a ``(batch_size,)`` integer tensor, the batch's third
    element, which the ready modules pass to the loss as ``indices=``. Further fields of the
    item (Lightly's file names) are dropped. Batched fetching (``__getitems__``) is kept.

    Example:
        >>> dataset = IndexedDataset(digits_dataset())
        >>> (x0, x1), label, index = dataset[3]
        >>> index
        3
    """

    def __init__(self, dataset: Dataset) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ValueError(
                f"dataset must be a map-style data set (with __getitem__ and __len__), got "
                f"{type(dataset).__name__}"
            )
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @staticmethod
    def _with_index(item: Any, index: int) -> tuple[Any, Any, int]:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            raise ValueError(
                f"IndexedDataset expects items (views, label, ...), got {type(item).__name__}"
            )
        return item[0], item[1], int(index)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        return self._with_index(self.dataset[index], index)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any, int]]:
        fetch = getattr(self.dataset, "__getitems__", None)
        items = fetch(indices) if fetch is not None else [self.dataset[i] for i in indices]
        return [self._with_index(item, i) for item, i in zip(items, indices)]


def load_digits_tensors(channels: int = 1) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as float images in [0, 1], shape ``(N, channels, 8, 8)``, and labels."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    from sklearn.datasets import load_digits  # scikit-learn is an optional dependency

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    return images.expand(-1, channels, -1, -1).contiguous(), torch.as_tensor(digits.target)


def digits_dataset(
    views: int = 2,
    indices: Sequence[int] | None = None,
    augment: BatchAugment | Sequence[BatchAugment] | None = None,
) -> DigitsViews:
    """scikit-learn's digits (1x8x8, pixels in [0, 1]) as a Lightly-shaped data set.

    Args:
        views: number of augmented views per item (a list); ``0`` gives the image itself (a
            tensor, no augmentation), for evaluation and kNN banks.
        indices: keep only these images (a train/test split); default all 1,797.
        augment: replaces :class:`DigitsAugment` (see :class:`DigitsViews`).
    """
    images, labels = load_digits_tensors()
    if indices is not None:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if index.numel() == 0 or index.min() < 0 or index.max() >= images.shape[0]:
            raise ValueError(
                f"indices must be a non-empty sequence of ints in [0, {images.shape[0]}), "
                f"got {len(index)} indices"
                + (f" in [{int(index.min())}, {int(index.max())}]" if index.numel() else "")
            )
        images, labels = images[index], labels[index]
    return DigitsViews(images, labels, views=views, augment=augment)


class DigitsDataModule(pl.LightningDataModule):
    """The digits as a LightningDataModule, for ``LightningCLI`` (``--data``).

    Training batches are two augmented views of every image, shuffled, the last incomplete
    batch dropped; the validation loader (two seeded-per-sample views with labels of the first
    ``probe_size`` images) is the probe ``TemperatureAnalysis`` takes by default. The modules
    have no ``validation_step``, so Lightning runs no validation loop on it.

    Example:
        >>> from pytorch_lightning.cli import LightningCLI
        >>> LightningCLI(SimCLR, DigitsDataModule)  # python train.py fit --data.batch_size 128
    """

    def __init__(self, batch_size: int = 256, num_workers: int = 0, probe_size: int = 512) -> None:
        super().__init__()
        self.batch_size = check_int(batch_size, "batch_size", minimum=2)
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.probe_size = check_int(probe_size, "probe_size", minimum=2)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            digits_dataset(),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        count = min(self.probe_size, len(load_digits_tensors()[1]))
        probe = digits_dataset(indices=range(count))
        return DataLoader(probe, batch_size=self.batch_size, num_workers=self.num_workers)
