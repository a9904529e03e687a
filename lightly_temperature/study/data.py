"""Data sources of the temperature study: embedded digits, an image folder, torchvision files.

Every source gives the same :class:`StudyData`: a training set whose batches are shaped like
Lightly's (``([view0, view1], labels)``), plain (un-augmented) train and test images for the
kNN and linear evaluation, uniformity and tolerance, and a two-view probe of the test split for
alignment and the positive / top-10 negative similarities. The digits are the package's
:func:`lightly_temperature.data.digits_dataset` pipeline (batched ``DigitsAugment`` views).
Nothing is ever downloaded.

Example:
    >>> from lightly_temperature.study.data import load_study_data
    >>> data = load_study_data()  # scikit-learn's digits, 8x8 grayscale, 10 classes
    >>> loader = data.train_loader(batch_size=256, seed=0)
    >>> (x0, x1), labels = next(iter(loader))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lightly_temperature.data import DigitsViews, IndexedDataset, load_digits_tensors

#: ``--dataset`` names and the torchvision class reading their local files.
TORCHVISION_DATASETS = ("cifar10", "cifar100", "svhn")


class StudyDataError(ValueError):
    """A data source that cannot be used (missing path, empty folder, unknown dataset)."""


class TwoViewDataset(Dataset):
    """Wraps an ``(image, label)`` data set whose transform returns two views (Lightly's
    ``SimCLRTransform``) so that samples are ``([view0, view1], label)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        views, label = self.dataset[index][:2]
        return list(views), label


@dataclass
class StudyData:
    """One data source, split into train (self-supervised training) and test (evaluation).

    Attributes:
        name: a short name for reports (``digits``, ``cifar10``, the folder name).
        train_views: training samples ``([view0, view1], label)``.
        train_plain: ``(image, label)`` without augmentation, the kNN bank / linear-probe train set.
        test_plain: ``(image, label)`` without augmentation, the evaluation set.
        test_views: the test split as ``([view0, view1], label)``.
        num_classes, in_channels, image_size: what the backbone must accept.
    """

    name: str
    train_views: Dataset
    train_plain: Dataset
    test_plain: Dataset
    test_views: Dataset
    num_classes: int
    in_channels: int
    image_size: int

    def train_loader(
        self, batch_size: int, seed: int, num_workers: int = 0, indexed: bool = False
    ) -> DataLoader:
        """Shuffled training loader (fixed ``seed``), last incomplete batch dropped.

        ``indexed``: batches also carry the samples' indices (``IndexedDataset``), for a loss
        part indexed by sample (a memory bank indexed by sample, a per-sample temperature)."""
        generator = torch.Generator().manual_seed(seed)
        dataset = IndexedDataset(self.train_views) if indexed else self.train_views
        return DataLoader(
            dataset,
            batch_size=min(batch_size, len(self.train_views)),  # type: ignore[arg-type]
            shuffle=True,
            drop_last=True,
            generator=generator,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    def probe_loader(self, batch_size: int, num_workers: int = 0) -> DataLoader:
        """Two augmented views of the test split, ``([view0, view1], labels)``, in order."""
        return DataLoader(
            self.test_views, batch_size=batch_size, shuffle=False, num_workers=num_workers
        )

    def plain_loader(self, split: str, batch_size: int, num_workers: int = 0) -> DataLoader:
        """``(images, labels)`` of the ``train`` or ``test`` split, without augmentation."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        dataset = self.train_plain if split == "train" else self.test_plain
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def dataset_labels(dataset: Dataset) -> Tensor | None:
    r"""The labels of ``dataset`` when it keeps them in memory (the digits' ``labels``,
    torchvision's ``targets`` or ``labels``, through ``Subset``\ s), without loading an image;
    None when it does not."""
    if isinstance(dataset, Subset):
        labels = dataset_labels(dataset.dataset)
        return None if labels is None else labels[torch.as_tensor(dataset.indices)]
    if isinstance(dataset, TwoViewDataset):
        return dataset_labels(dataset.dataset)
    for name in ("labels", "targets"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return torch.as_tensor(labels)
    return None


def check_few_shot_data(data: StudyData, few_shot: tuple[int, ...]) -> None:
    """Each few-shot label count must fit every class of the plain train split (the labelled
    images are drawn from it): ValueError naming ``--fewshot`` and the smallest class
    otherwise. A data set whose labels are not in memory is checked at the first evaluation."""
    labels = dataset_labels(data.train_plain)
    if not few_shot or labels is None or labels.numel() == 0:
        return
    classes, counts = torch.unique(labels, return_counts=True)
    smallest = int(counts.argmin())
    if max(few_shot) > int(counts[smallest]):
        raise ValueError(
            f"--fewshot {' '.join(str(k) for k in few_shot)}: class {int(classes[smallest])} "
            f"of the train split has {int(counts[smallest])} images, fewer than "
            f"{max(few_shot)} labels per class: give --fewshot label counts up to "
            f"{int(counts[smallest])}"
        )


def _stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in labels.unique():
        index = (labels == label).nonzero().flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        n_test = max(1, int(round(test_fraction * len(index))))
        test.append(index[:n_test])
        train.append(index[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_digits_data(test_fraction: float = 0.2, split_seed: int = 0) -> StudyData:
    """scikit-learn's digits (1,797 real 8x8 grayscale images, 10 classes), shipped inside
    scikit-learn: a stratified 80/20 train/test split, pixels scaled to [0, 1], the batched
    :class:`~lightly_temperature.data.DigitsAugment` views of
    :class:`~lightly_temperature.data.DigitsViews`."""
    try:
        images, labels = load_digits_tensors()
    except ImportError as error:  # pragma: no cover - scikit-learn is in the "study" extra
        raise StudyDataError(
            "the embedded digits data set needs scikit-learn: "
            "pip install 'lightly-temperature[study]'"
        ) from error
    train_index, test_index = _stratified_split(labels, test_fraction, split_seed)
    train_images, train_labels = images[train_index], labels[train_index]
    test_images, test_labels = images[test_index], labels[test_index]
    return StudyData(
        name="digits",
        train_views=DigitsViews(train_images, train_labels, views=2),
        train_plain=DigitsViews(train_images, train_labels, views=0),
        test_plain=DigitsViews(test_images, test_labels, views=0),
        test_views=DigitsViews(test_images, test_labels, views=2),
        num_classes=10,
        in_channels=1,
        image_size=8,
    )


def _image_transforms(image_size: int, normalize: bool = True):
    """Lightly's SimCLR views for small colour images, and the matching plain transform."""
    import torchvision.transforms as T
    from lightly.transforms import SimCLRTransform
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    views = SimCLRTransform(
        input_size=image_size,
        gaussian_blur=0.0,  # as in Lightly's CIFAR-10 benchmark: blur hurts 32x32 images
        min_scale=0.2,
        normalize=IMAGENET_NORMALIZE if normalize else None,
    )
    plain = [T.Resize((image_size, image_size)), T.ToTensor()]
    if normalize:
        plain.append(T.Normalize(IMAGENET_NORMALIZE["mean"], IMAGENET_NORMALIZE["std"]))
    return views, T.Compose(plain)


def _subset(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    n = len(dataset)  # type: ignore[arg-type]
    if max_samples is None or n <= max_samples:
        return dataset
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(n, generator=generator)[:max_samples].sort().values
    return Subset(dataset, index.tolist())


def _check_images_readable(path: str, files: list[str]) -> None:
    """Decodes every image before training, so that a damaged file is named now rather than
    crashing a run."""
    from PIL import Image

    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
        except Exception as error:  # PIL raises many kinds for a file it cannot decode
            raise StudyDataError(
                f"--data {path}: cannot read image {file} ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else 'unreadable'})"
            ) from None


def load_folder_data(
    path: str,
    image_size: int = 32,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    max_eval_samples: int | None = 10000,
) -> StudyData:
    """An image folder whose class subfolders give the labels (torchvision's ``ImageFolder``
    layout), split 80/20 per class; Lightly's ``SimCLRTransform`` views at ``image_size``."""
    from torchvision.datasets import ImageFolder

    root = Path(path)
    if not root.exists():
        raise StudyDataError(f"--data {path}: no such folder")
    if not root.is_dir():
        raise StudyDataError(f"--data {path}: not a folder")
    views, plain = _image_transforms(image_size)
    try:
        plain_set = ImageFolder(str(root), transform=plain)
    except FileNotFoundError as error:
        raise StudyDataError(
            f"--data {path}: empty folder, expected class subfolders holding images "
            f"({str(error).splitlines()[0]})"
        ) from None
    if len(plain_set) < 4:
        raise StudyDataError(f"--data {path}: found {len(plain_set)} images, need at least 4")
    if len(plain_set.classes) < 2:
        raise StudyDataError(
            f"--data {path}: found {len(plain_set.classes)} class subfolder "
            f"({', '.join(plain_set.classes)}), need at least 2 for the kNN and linear evaluation"
        )
    _check_images_readable(path, [file for file, _ in plain_set.samples])
    view_set = ImageFolder(str(root), transform=views)
    labels = torch.tensor(plain_set.targets)
    train_index, test_index = _stratified_split(labels, test_fraction, split_seed)
    test_plain = _subset(Subset(plain_set, test_index.tolist()), max_eval_samples, split_seed)
    test_views = _subset(Subset(view_set, test_index.tolist()), max_eval_samples, split_seed)
    return StudyData(
        name=root.resolve().name,
        train_views=TwoViewDataset(Subset(view_set, train_index.tolist())),
        train_plain=_subset(Subset(plain_set, train_index.tolist()), max_eval_samples, split_seed),
        test_plain=test_plain,
        test_views=TwoViewDataset(test_views),
        num_classes=len(plain_set.classes),
        in_channels=3,
        image_size=image_size,
    )


def load_torchvision_data(
    dataset: str,
    data_dir: str,
    max_eval_samples: int | None = 10000,
    split_seed: int = 0,
) -> StudyData:
    """CIFAR-10, CIFAR-100 or SVHN from torchvision's files in ``data_dir`` (never downloaded):
    their own train/test splits, Lightly's ``SimCLRTransform`` views at 32x32."""
    import torchvision.datasets as tvd

    name = dataset.lower()
    if name not in TORCHVISION_DATASETS:
        raise StudyDataError(
            f"--dataset {dataset}: unknown data set, choose one of digits, "
            f"{', '.join(TORCHVISION_DATASETS)}"
        )
    root = Path(data_dir)
    if not root.is_dir():
        raise StudyDataError(f"--data-dir {data_dir}: no such folder")
    views, plain = _image_transforms(32)

    def make(train: bool, transform):
        if name == "svhn":
            return tvd.SVHN(str(root), split="train" if train else "test", transform=transform)
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        return cls(str(root), train=train, transform=transform, download=False)

    try:
        train_views, train_plain = make(True, views), make(True, plain)
        test_plain, test_views = make(False, plain), make(False, views)
    except (RuntimeError, FileNotFoundError, OSError):
        expected = {
            "cifar10": "cifar-10-batches-py/",
            "cifar100": "cifar-100-python/",
            "svhn": "train_32x32.mat and test_32x32.mat",
        }[name]
        raise StudyDataError(
            f"--data-dir {data_dir}: no {name} files there (expected torchvision's {expected}; "
            "nothing is downloaded)"
        ) from None
    num_classes = {"cifar10": 10, "cifar100": 100, "svhn": 10}[name]
    return StudyData(
        name=name,
        train_views=TwoViewDataset(train_views),
        train_plain=_subset(train_plain, max_eval_samples, split_seed),
        test_plain=_subset(test_plain, max_eval_samples, split_seed),
        test_views=TwoViewDataset(_subset(test_views, max_eval_samples, split_seed)),
        num_classes=num_classes,
        in_channels=3,
        image_size=32,
    )


def load_study_data(
    data: str | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    image_size: int = 32,
    max_eval_samples: int | None = 10000,
) -> StudyData:
    """The study's data: ``data`` (an image folder), ``dataset`` + ``data_dir`` (torchvision
    files), or, with neither, the embedded digits.

    Raises:
        StudyDataError: a missing or empty path, an unknown data set, or both sources given.
    """
    if data is not None and dataset is not None:
        raise StudyDataError("give either --data PATH or --dataset NAME --data-dir PATH, not both")
    if data is not None:
        return load_folder_data(data, image_size=image_size, max_eval_samples=max_eval_samples)
    if dataset is not None:
        if dataset.lower() == "digits":
            return load_digits_data()
        if data_dir is None:
            if dataset.lower() not in TORCHVISION_DATASETS:
                raise StudyDataError(
                    f"--dataset {dataset}: unknown data set, choose one of "
                    f"digits, {', '.join(TORCHVISION_DATASETS)}"
                )
            raise StudyDataError(
                f"--dataset {dataset} needs --data-dir PATH (nothing is downloaded)"
            )
        return load_torchvision_data(dataset, data_dir, max_eval_samples=max_eval_samples)
    if data_dir is not None:
        raise StudyDataError("--data-dir needs --dataset cifar10|cifar100|svhn")
    return load_digits_data()
