"""The probe data of TemperatureAnalysis: subsampling, sharding, parsing, embedding, gathering."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

#: ``embed(pl_module, images) -> (batch, dim)`` embeddings.
EmbedFn = Callable[[nn.Module, Tensor], Tensor]


def default_embed(module: nn.Module, x: Tensor) -> Tensor:
    """``projection_head(backbone(x).flatten(1))`` when the module has both, else ``module(x)``.

    The first is the embedding the contrastive loss sees in Lightly's SimCLR/MoCo examples;
    Lightly's benchmark modules return backbone features from ``forward``.
    """
    backbone = getattr(module, "backbone", None)
    head = getattr(module, "projection_head", None)
    if callable(backbone) and callable(head):
        return head(backbone(x).flatten(start_dim=1))
    return module(x)


def is_map_style(loader: DataLoader) -> bool:
    dataset = getattr(loader, "dataset", None)
    return (
        dataset is not None
        and not isinstance(dataset, IterableDataset)
        and hasattr(dataset, "__len__")
        and hasattr(dataset, "__getitem__")
    )


def check_not_empty(loader: Any, name: str) -> None:
    """Raises ``ValueError`` when ``loader`` is not a loader or is known to be empty."""
    if not hasattr(loader, "__iter__"):
        raise ValueError(f"{name} must be a DataLoader (an iterable of batches), got {loader!r}")
    length: int | None = None
    if is_map_style(loader):
        length = len(loader.dataset)
    elif hasattr(loader, "__len__"):
        try:
            length = len(loader)
        except TypeError:
            length = None
    if length == 0:
        raise ValueError(f"{name} is empty: TemperatureAnalysis needs at least 2 probe samples")


class _SeededSubset(Dataset):
    """``dataset[indices[i]]`` with torch's RNG seeded by the sample's index.

    The augmented views of each probe sample are then the same at every evaluation, in any
    worker, on any rank: metrics are comparable over time and independent of the sharding.
    Training's RNG state is left untouched.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], seed: int) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        index = self.indices[i]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed + index)
            return index, self.dataset[index]


class _IndexedCollate:
    """Collates ``(index, item)`` pairs into ``(indices, collate(items))`` (picklable)."""

    def __init__(self, collate_fn: Callable) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list[tuple[int, Any]]) -> tuple[Tensor, Any]:
        indices = torch.tensor([index for index, _ in items], dtype=torch.long)
        return indices, self.collate_fn([item for _, item in items])


def probe_indices(num_samples: int, max_samples: int | None, seed: int) -> Tensor:
    """All indices, or ``max_samples`` of them drawn with a fixed seed (sorted)."""
    if max_samples is None or num_samples <= max_samples:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_samples, generator=generator)[:max_samples].sort().values


def iterate_probe(
    loader: DataLoader,
    max_samples: int | None,
    seed: int,
    rank: int,
    world_size: int,
) -> tuple[Iterator[tuple[Tensor, Any]], bool]:
    """Batches ``(sample indices, batch)`` of this rank's share of the probe.

    A map-style data set is subsampled to ``max_samples`` with a fixed seed and split across
    ranks (the second return value is then True: the shares must be gathered). Any other
    loader is read by every rank, up to ``max_samples`` samples, in its own order.
    """
    if is_map_style(loader):
        indices = probe_indices(len(loader.dataset), max_samples, seed)[rank::world_size]
        batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None) or 1
        sharded = DataLoader(
            _SeededSubset(loader.dataset, indices.tolist(), seed),
            batch_size=batch_size,
            shuffle=False,
            num_workers=loader.num_workers,
            collate_fn=_IndexedCollate(loader.collate_fn),
            pin_memory=loader.pin_memory,
        )
        return iter(sharded), world_size > 1
    return _first_samples(loader, max_samples), False


def _first_samples(loader: Any, max_samples: int | None) -> Iterator[tuple[Tensor, Any]]:
    seen = 0
    for batch in loader:
        views, _ = split_batch(batch)
        n = views[0].shape[0]
        if max_samples is not None and seen + n > max_samples:
            batch = _truncate(batch, max_samples - seen)
            n = max_samples - seen
        yield torch.arange(seen, seen + n), batch
        seen += n
        if max_samples is not None and seen >= max_samples:
            return


def _truncate(batch: Any, n: int) -> Any:
    if isinstance(batch, Tensor):
        return batch[:n]
    if isinstance(batch, (list, tuple)):
        return type(batch)(_truncate(item, n) for item in batch)
    return batch


def split_batch(batch: Any) -> tuple[list[Tensor], Tensor | None]:
    """Views and labels of a probe batch shaped like Lightly's data sets.

    Accepted: ``(views, labels)``, ``(views, labels, filenames)``, ``views`` alone, where
    ``views`` is a list of augmented image tensors (the first two are used) or one tensor.
    Labels are None when absent or not a 1-D integer tensor with one entry per sample.
    """
    labels: Tensor | None = None
    if isinstance(batch, Tensor):
        views: Any = batch
    elif isinstance(batch, (list, tuple)) and len(batch) > 0:
        if all(isinstance(v, Tensor) for v in batch) and _looks_like_views(batch):
            views = list(batch)  # a bare list of views, no labels
        else:
            views = batch[0]
            if len(batch) > 1 and isinstance(batch[1], Tensor):
                labels = batch[1]
    else:
        raise ValueError(
            "probe batches must be (views, labels[, filenames]) or views, got "
            f"{type(batch).__name__}"
        )
    if isinstance(views, Tensor):
        views = [views]
    if (
        not isinstance(views, (list, tuple))
        or not views
        or not all(isinstance(v, Tensor) for v in views)
    ):
        raise ValueError(
            "the views of a probe batch must be a tensor or a list of tensors, got "
            f"{type(views).__name__}"
        )
    views = list(views[:2])
    n = views[0].shape[0]
    if labels is not None and (
        labels.dim() != 1 or labels.shape[0] != n or labels.is_floating_point()
    ):
        labels = None
    return views, labels


def _looks_like_views(batch: Sequence[Tensor]) -> bool:
    # [x0, x1] (two views, no labels): same shapes, more than one dimension.
    return len(batch) >= 2 and batch[0].dim() > 1 and batch[0].shape == batch[1].shape


@dataclass
class ProbeEmbeddings:
    """Embeddings of the probe: first views, second views (or None), labels (or None)."""

    z0: Tensor
    z1: Tensor | None
    labels: Tensor | None

    @property
    def num_samples(self) -> int:
        return self.z0.shape[0]


def embed_probe(
    batches: Iterator[tuple[Tensor, Any]],
    pl_module: nn.Module,
    embed: EmbedFn,
    device: torch.device,
    forward_context: Callable[[], Any] = contextlib.nullcontext,
) -> tuple[Tensor, ProbeEmbeddings]:
    """Embeds this rank's probe batches: ``(sample indices, embeddings)``, float32.

    An empty share gives zero rows, with ``z1`` and ``labels`` present (zero rows too), so
    that it does not veto the other ranks' second views and labels when gathered.
    """
    indices, z0s, z1s, labels = [], [], [], []
    has_second_view, has_labels = True, True
    for idx, batch in batches:
        views, batch_labels = split_batch(batch)
        with forward_context():
            z0s.append(_embed(embed, pl_module, views[0], device))
            if len(views) > 1:
                z1s.append(_embed(embed, pl_module, views[1], device))
        has_second_view &= len(views) > 1
        has_labels &= batch_labels is not None
        if batch_labels is not None:
            labels.append(batch_labels.to(device=device, dtype=torch.long))
        indices.append(idx.to(device))
    if not indices:
        empty = torch.zeros(0, 0, device=device)
        no_labels = torch.zeros(0, dtype=torch.long, device=device)
        return no_labels, ProbeEmbeddings(empty, empty, no_labels)
    return torch.cat(indices), ProbeEmbeddings(
        torch.cat(z0s),
        torch.cat(z1s) if has_second_view else None,
        torch.cat(labels) if has_labels else None,
    )


def _embed(embed: EmbedFn, module: nn.Module, x: Tensor, device: torch.device) -> Tensor:
    z = embed(module, x.to(device, non_blocking=True))
    if not isinstance(z, Tensor):
        raise ValueError(
            f"embed must return a tensor, got {type(z).__name__}: pass embed= to "
            "TemperatureAnalysis to say how to embed images with this module"
        )
    return z.reshape(z.shape[0], -1).float()


def gather_probe(
    pl_module: Any, indices: Tensor, probe: ProbeEmbeddings
) -> tuple[Tensor, ProbeEmbeddings]:
    """Gathers every rank's share with ``pl_module.all_gather``, in sample-index order.

    Shares may differ in size: they are padded to the largest. Second views and labels are
    kept only when every rank has them.
    """
    device = indices.device
    local = torch.tensor(
        [indices.shape[0], probe.z0.shape[1], probe.z1 is not None, probe.labels is not None],
        device=device,
    )
    info = pl_module.all_gather(local).reshape(-1, 4)  # (world_size, 4)
    counts = info[:, 0].tolist()
    max_count, dim = int(info[:, 0].max().item()), int(info[:, 1].max().item())
    has_second_view, has_labels = bool(info[:, 2].min().item()), bool(info[:, 3].min().item())

    def gather(x: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        padded = torch.zeros((max_count, *shape), dtype=dtype, device=device)
        if x is not None and x.shape[0] > 0:
            padded[: x.shape[0]] = x
        stacked = pl_module.all_gather(padded)  # (world_size, max_count, ...)
        return torch.cat([stacked[r, : int(c)] for r, c in enumerate(counts)])

    all_indices = gather(indices, (), torch.long)
    z0 = gather(probe.z0, (dim,), torch.float32)
    z1 = gather(probe.z1, (dim,), torch.float32) if has_second_view else None
    labels = gather(probe.labels, (), torch.long) if has_labels else None
    order = all_indices.argsort()
    return all_indices[order], ProbeEmbeddings(
        z0[order], None if z1 is None else z1[order], None if labels is None else labels[order]
    )
