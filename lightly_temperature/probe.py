"""The evaluation pass of :class:`~lightly_temperature.TemperatureAnalysis`, usable on its own.

Two steps, each a function:

- :func:`embed_probe`: embeds a probe loader with a module, in eval mode, under
  ``torch.no_grad``, with each probe sample's augmentations seeded by its index (the views are
  the same at every evaluation, in any worker, on any number of processes) and training's RNG
  left untouched; a map-style probe is subsampled to ``max_samples`` with a fixed seed.
- :func:`probe_metrics`: the metric values of those embeddings (uniformity, alignment,
  tolerance, positive and top-k negative similarities, effective rank, Lightly's
  ``std_of_l2_normalized``), and the similarities behind the paper's Fig. 8.

``TemperatureAnalysis`` is these two steps run every N epochs, plus logging; the temperature
study evaluates its runs with the same two steps, so its numbers are the callback's.

Example:
    >>> from lightly_temperature.probe import embed_probe, probe_metrics
    >>> probe = embed_probe(model, probe_loader, seed=0)  # (views, labels) batches
    >>> result = probe_metrics(probe, top_k=10)
    >>> result.values["uniformity"], result.positive.shape, result.negatives.shape
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from lightly_temperature._validation import HardNegatives, check_int, check_ints
from lightly_temperature.metrics import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DRAWS,
    FewShotAccuracy,
    alignment,
    effective_negatives_of_views,
    effective_rank,
    embedding_spread,
    few_shot_accuracy,
    positive_and_top_negative_similarities,
    same_label_penalty_mass_of_views,
    std_of_l2_normalized,
    tolerance,
    top_k_false_negative_rate,
    uniformity,
)

#: Metric groups :func:`probe_metrics` (and TemperatureAnalysis) can compute.
AVAILABLE_METRICS = (
    "uniformity",
    "alignment",
    "tolerance",
    "similarities",
    "effective_rank",
    "std_of_l2_normalized",
    "embedding_spread",
    "false_negatives",
    "effective_negatives",
    "false_negative_penalty",
)

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


def _is_map_style(loader: DataLoader) -> bool:
    dataset = getattr(loader, "dataset", None)
    return (
        dataset is not None
        and not isinstance(dataset, IterableDataset)
        and hasattr(dataset, "__len__")
        and hasattr(dataset, "__getitem__")
    )


def check_not_empty(loader: Any, name: str) -> None:
    """Raises ``ValueError`` when ``loader`` is not a loader or is known to be empty."""
    if isinstance(loader, Tensor):  # iterable, but each image would become a batch
        raise ValueError(
            f"{name} must be a DataLoader (an iterable of batches), got a tensor of shape "
            f"{tuple(loader.shape)}: wrap it, e.g. DataLoader(TensorDataset(images, labels), "
            f"batch_size=256). {PROBE_FORMATS}"
        )
    if not hasattr(loader, "__iter__"):
        raise ValueError(f"{name} must be a DataLoader (an iterable of batches), got {loader!r}")
    length: int | None = None
    if _is_map_style(loader):
        length = len(loader.dataset)
    elif hasattr(loader, "__len__"):
        try:
            length = len(loader)
        except TypeError:
            length = None
    if length == 0:
        raise ValueError(f"{name} is empty: TemperatureAnalysis needs at least 2 probe samples")


#: The probe batches :func:`split_batch` accepts, for error messages.
PROBE_FORMATS = (
    "Probe batches must be (views, labels), (views, labels, filenames) or views alone, views "
    "a tensor of images or a list of two augmented views (as Lightly's data sets give)"
)


def check_probe_batches(loader: Any, name: str, seed: int = 0) -> None:
    """Reads the first sample of a map-style probe (or the first batch of a list of batches)
    and raises ``ValueError`` naming ``name`` if :func:`split_batch` cannot read it, so that a
    bad probe is refused before training rather than at its first evaluation. Training's RNG
    is untouched; any other loader is checked when it is first embedded."""
    if _is_map_style(loader):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            _, first = _IndexedCollate(loader.collate_fn)([(0, loader.dataset[0])])
    elif isinstance(loader, (list, tuple)) and loader:
        first = loader[0]
    else:
        return
    try:
        split_batch(first)
    except ValueError as error:
        raise ValueError(f"{name}: {error}. {PROBE_FORMATS}") from None


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

    def __getitems__(self, positions: Sequence[int]) -> list[tuple[int, Any]]:
        """A batch: the same items, at once when the data set can seed each of its samples
        within one batched call (``seeded_items``, as :class:`~lightly_temperature.data.\
DigitsViews` does)."""
        indices = [self.indices[i] for i in positions]
        seeded_items = getattr(self.dataset, "seeded_items", None)
        if seeded_items is None:
            return [self[i] for i in positions]
        with torch.random.fork_rng(devices=[]):  # nothing drawn from torch's RNG leaks out
            items = seeded_items(indices, [self.seed + index for index in indices])
        return list(zip(indices, items))


class _IndexedCollate:
    """Collates ``(index, item)`` pairs into ``(indices, collate(items))`` (picklable)."""

    def __init__(self, collate_fn: Callable) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: list[tuple[int, Any]]) -> tuple[Tensor, Any]:
        indices = torch.tensor([index for index, _ in items], dtype=torch.long)
        return indices, self.collate_fn([item for _, item in items])


def _probe_indices(num_samples: int, max_samples: int | None, seed: int) -> Tensor:
    """All indices, or ``max_samples`` of them drawn with a fixed seed (sorted)."""
    if max_samples is None or num_samples <= max_samples:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_samples, generator=generator)[:max_samples].sort().values


def _iterate_probe(
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
    if _is_map_style(loader):
        indices = _probe_indices(len(loader.dataset), max_samples, seed)[rank::world_size]
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
    """Embeddings of a probe, float32, in sample order: first views ``z0`` (N, D), second views
    ``z1`` (N, D) or None (a one-view probe), ``labels`` (N,) or None (no labels)."""

    z0: Tensor
    z1: Tensor | None
    labels: Tensor | None

    @property
    def num_samples(self) -> int:
        return self.z0.shape[0]


def embed_probe(
    module: nn.Module,
    loader: Any,
    embed: EmbedFn = default_embed,
    max_samples: int | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    forward_context: Callable[[], Any] = contextlib.nullcontext,
    rank: int = 0,
    world_size: int = 1,
    all_gather: Callable[[Tensor], Tensor] | None = None,
) -> ProbeEmbeddings:
    """Embeds the probe ``loader`` with ``module``, as TemperatureAnalysis does.

    The module is put in eval mode under ``torch.no_grad`` (each submodule's mode is restored
    after); torch's CPU RNG is forked and seeded with ``seed`` (training's RNG is untouched).
    A map-style probe is subsampled to ``max_samples`` samples with ``seed`` and each sample is
    loaded with the RNG seeded by ``seed + index``, so its augmented views do not depend on the
    batch it lands in, the workers or the number of processes. Any other loader is read in its
    own order, up to ``max_samples`` samples.

    Args:
        module: what embeds the images (with ``embed``).
        loader: batches like Lightly's data sets, see :func:`split_batch`.
        embed: ``embed(module, images) -> embeddings``; default :func:`default_embed`.
        max_samples: subsample larger probes to this many samples (None: all).
        seed: seed of the subsampling and of each sample's augmentations.
        device: where to embed; default the device of the module's first parameter.
        forward_context: context of each forward, e.g. a precision plugin's autocast.
        rank, world_size, all_gather: under DDP, each rank embeds its share of a map-style
            probe and ``all_gather`` (e.g. ``pl_module.all_gather``) joins the shares; the
            result equals one process's.
    """
    check_int(max_samples, "max_samples", minimum=2, optional=True)
    if device is None:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    modes = {submodule: submodule.training for submodule in module.modules()}
    module.eval()
    try:
        devices = [device] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(seed)  # CPU only: CUDA RNGs untouched
            batches, sharded = _iterate_probe(loader, max_samples, seed, rank, world_size)
            indices, probe = _embed_batches(batches, module, embed, device, forward_context)
            if sharded:
                if all_gather is None:
                    raise ValueError(
                        f"all_gather is needed to join the probe shares of {world_size} ranks"
                    )
                probe = _gather_probe(all_gather, indices, probe)
    finally:
        for submodule, training in modes.items():
            submodule.training = training
    return probe


def _embed_batches(
    batches: Iterator[tuple[Tensor, Any]],
    module: nn.Module,
    embed: EmbedFn,
    device: torch.device,
    forward_context: Callable[[], Any],
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
            z0s.append(_embed(embed, module, views[0], device))
            if len(views) > 1:
                z1s.append(_embed(embed, module, views[1], device))
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


def _gather_probe(
    all_gather: Callable[[Tensor], Tensor], indices: Tensor, probe: ProbeEmbeddings
) -> ProbeEmbeddings:
    """Gathers every rank's share with ``all_gather``, in sample-index order.

    Shares may differ in size: they are padded to the largest. Second views and labels are
    kept only when every rank has them.
    """
    device = indices.device
    local = torch.tensor(
        [indices.shape[0], probe.z0.shape[1], probe.z1 is not None, probe.labels is not None],
        device=device,
    )
    info = all_gather(local).reshape(-1, 4)  # (world_size, 4)
    counts = info[:, 0].tolist()
    max_count, dim = int(info[:, 0].max().item()), int(info[:, 1].max().item())
    has_second_view, has_labels = bool(info[:, 2].min().item()), bool(info[:, 3].min().item())

    def gather(x: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        padded = torch.zeros((max_count, *shape), dtype=dtype, device=device)
        if x is not None and x.shape[0] > 0:
            padded[: x.shape[0]] = x
        stacked = all_gather(padded)  # (world_size, max_count, ...)
        return torch.cat([stacked[r, : int(c)] for r, c in enumerate(counts)])

    all_indices = gather(indices, (), torch.long)
    z0 = gather(probe.z0, (dim,), torch.float32)
    z1 = gather(probe.z1, (dim,), torch.float32) if has_second_view else None
    labels = gather(probe.labels, (), torch.long) if has_labels else None
    order = all_indices.argsort()
    return ProbeEmbeddings(
        z0[order], None if z1 is None else z1[order], None if labels is None else labels[order]
    )


#: Seed of the few-shot label draws: every run and evaluation labels the same samples, so
#: that runs are compared on the same labelled images.
FEW_SHOT_SEED = 0


def few_shot_names(shots: int) -> tuple[str, str]:
    """The names of the few-shot values for ``shots`` labels per class: the mean accuracy over
    the label draws and its standard deviation over them."""
    return f"fewshot_accuracy_{shots}", f"fewshot_accuracy_{shots}_draw_std"


def check_few_shot(few_shot: Sequence[int] | int, name: str = "few_shot") -> tuple[int, ...]:
    """Labels per class of the few-shot accuracy: distinct ints >= 1, kept in order."""
    if isinstance(few_shot, int) and not isinstance(few_shot, bool):
        few_shot = (few_shot,)
    checked = check_ints(few_shot, name, minimum=1)
    if len(set(checked)) != len(checked):
        raise ValueError(f"{name} must not repeat a label count, got {few_shot!r}")
    return checked


def metric_names(
    metrics: Sequence[str] = AVAILABLE_METRICS, top_k: int = 10, few_shot: Sequence[int] = ()
) -> list[str]:
    """Names of the values :func:`probe_metrics` returns for these metric groups and few-shot
    label counts, in order."""
    names: list[str] = []
    for metric in AVAILABLE_METRICS:
        if metric not in metrics:
            continue
        if metric == "similarities":
            names += ["positive_similarity", f"top{top_k}_negative_similarity"]
        elif metric == "false_negatives":
            names.append(f"top{top_k}_false_negative_rate")
        elif metric == "false_negative_penalty":
            names.append("false_negative_penalty_mass")
        else:
            names.append(metric)
    for shots in few_shot:
        names += few_shot_names(shots)
    return names


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """The metric groups in :data:`AVAILABLE_METRICS` order; ``ValueError`` for unknown ones."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in AVAILABLE_METRICS]
    if unknown or not metrics:
        raise ValueError(
            f"metrics must be a non-empty selection of {AVAILABLE_METRICS}, got {metrics!r}"
        )
    return tuple(m for m in AVAILABLE_METRICS if m in metrics)


@dataclass
class ProbeMetrics:
    """What :func:`probe_metrics` computed: ``values`` (name -> float, NaN where skipped), the
    similarities behind the paper's Fig. 8: ``positive`` (N,) and ``negatives`` (N, k), None
    when not computed (no ``similarities``, one view, non-finite embeddings), and
    ``per_sample``: the (N,) values behind the means of ``effective_negatives``,
    ``false_negative_penalty_mass`` and ``top{k}_false_negative_rate`` (for histograms),
    where computed."""

    values: dict[str, float]
    positive: Tensor | None
    negatives: Tensor | None
    per_sample: dict[str, Tensor] = field(default_factory=dict)


def probe_metrics(
    probe: ProbeEmbeddings,
    metrics: Sequence[str] | str = AVAILABLE_METRICS,
    top_k: int = 10,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    temperature: float | None = None,
    hard_negatives: HardNegatives = None,
    few_shot: Sequence[int] = (),
    few_shot_pool: ProbeEmbeddings | None = None,
    few_shot_draws: int = DEFAULT_DRAWS,
) -> ProbeMetrics:
    """The metric values of a probe's embeddings, as TemperatureAnalysis logs them.

    - ``uniformity`` (-L_uniformity, t = 2), ``tolerance`` (needs labels), ``effective_rank``
      ``std_of_l2_normalized`` and ``embedding_spread`` (below
      :data:`~lightly_temperature.metrics.COLLAPSE_THRESHOLD`: collapsed): of the first views
      ``z0``;
    - ``alignment`` and ``similarities`` (``positive_similarity``,
      ``top{k}_negative_similarity``: means of the paper's Fig. 8 distributions, k =
      ``top_k``, fewer only for a probe of fewer than ``top_k / 2 + 1`` samples): of the pairs
      ``(z0, z1)`` (need two views);
    - ``false_negatives`` (``top{k}_false_negative_rate``, needs labels): the mean fraction of
      each sample's k most similar other first views that share its label;
    - ``effective_negatives`` (needs two views and ``temperature``, the loss's softmax
      temperature; ``hard_negatives``: the loss's K): the mean effective number of negatives
      of each anchor of ``z0`` among the 2N - 2 others of the pairs (SimCLR's layout);
    - ``false_negative_penalty`` (``false_negative_penalty_mass``; needs two views, labels
      and ``temperature``): the mean share of that penalty on negatives of the anchor's label.
    - for each label count k of ``few_shot`` (needs labels): ``fewshot_accuracy_{k}``, the
      1-NN accuracy of the first views with k labelled samples per class, mean over
      ``few_shot_draws`` label draws (seed :data:`FEW_SHOT_SEED`), and
      ``fewshot_accuracy_{k}_draw_std``, its standard deviation over the draws
      (:func:`~lightly_temperature.metrics.few_shot_accuracy`). The labelled samples are
      drawn from ``few_shot_pool``'s first views (e.g. the train split) and the probe is
      the queries; without a pool they are drawn from the probe and the rest of it are the
      queries.

    A metric whose input is missing is NaN, as is every metric when an embedding is not
    finite (with a warning). A pure function: nothing is logged or kept.

    Raises:
        ValueError: an unknown metric, ``top_k`` < 1, fewer than 2 samples, or a label count
            above the size of a class of the labelled samples.
    """
    selected = check_metrics(metrics)
    check_int(top_k, "top_k", minimum=1)
    few_shot = check_few_shot(few_shot)
    if probe.num_samples < 2:
        raise ValueError(f"the probe has {probe.num_samples} sample(s), the metrics need 2")
    values = {name: math.nan for name in metric_names(selected, top_k, few_shot)}
    z0, z1, labels = probe.z0, probe.z1, probe.labels
    finite = torch.isfinite(z0).all()
    if z1 is not None:
        finite = finite & torch.isfinite(z1).all()
    if few_shot and few_shot_pool is not None:
        finite = finite & torch.isfinite(few_shot_pool.z0).all()
    if not bool(finite):  # one host sync for both views
        rank_zero_warn(
            "TemperatureAnalysis: the probe embeddings contain NaN or inf: every metric of "
            "this evaluation is logged as NaN"
        )
        return ProbeMetrics(values, None, None)
    positive = negatives = None
    # Metric values stay on the device until one transfer at the end (one sync, not one
    # per metric); tolerance is a float already (it may be skipped, which needs the host).
    results: dict[str, Tensor] = {}
    if "uniformity" in selected:
        results["uniformity"] = uniformity(z0, chunk_size=chunk_size)
    if "alignment" in selected and z1 is not None:
        results["alignment"] = alignment(z0, z1)
    if "tolerance" in selected and labels is not None:
        values["tolerance"] = _tolerance_or_nan(z0, labels)
    if "similarities" in selected and z1 is not None:
        k = min(top_k, 2 * z0.shape[0] - 2)
        positive, negatives = positive_and_top_negative_similarities(
            z0, z1, k=k, chunk_size=chunk_size
        )
        results["positive_similarity"] = positive.mean()
        results[f"top{top_k}_negative_similarity"] = negatives.mean()
    if "effective_rank" in selected:
        results["effective_rank"] = effective_rank(z0)
    if "std_of_l2_normalized" in selected:
        results["std_of_l2_normalized"] = std_of_l2_normalized(z0)
    if "embedding_spread" in selected:
        results["embedding_spread"] = embedding_spread(z0)
    per_sample: dict[str, Tensor] = {}
    if "false_negatives" in selected and labels is not None:
        k = min(top_k, z0.shape[0] - 1)
        per_sample["false_negative_rate"] = top_k_false_negative_rate(z0, labels, k, chunk_size)
        results[f"top{top_k}_false_negative_rate"] = per_sample["false_negative_rate"].mean()
    if "effective_negatives" in selected and z1 is not None and temperature is not None:
        per_sample["effective_negatives"] = effective_negatives_of_views(
            z0, z1, temperature, hard_negatives, chunk_size
        )
        results["effective_negatives"] = per_sample["effective_negatives"].mean()
    if (
        "false_negative_penalty" in selected
        and z1 is not None
        and labels is not None
        and temperature is not None
    ):
        per_sample["false_negative_penalty_mass"] = same_label_penalty_mass_of_views(
            z0, z1, labels, temperature, hard_negatives, chunk_size
        )
        results["false_negative_penalty_mass"] = per_sample["false_negative_penalty_mass"].mean()
    if results:
        stacked = torch.stack([v.detach().reshape(()).float() for v in results.values()])
        values.update(zip(results, stacked.tolist()))
    for shots, accuracy in _few_shot(probe, few_shot, few_shot_pool, few_shot_draws, chunk_size):
        mean_name, std_name = few_shot_names(shots)
        values[mean_name], values[std_name] = accuracy.mean, accuracy.std
    return ProbeMetrics(values, positive, negatives, per_sample)


def _few_shot(
    probe: ProbeEmbeddings,
    few_shot: Sequence[int],
    pool: ProbeEmbeddings | None,
    draws: int,
    chunk_size: int,
) -> Iterator[tuple[int, FewShotAccuracy]]:
    """The few-shot accuracy for each label count (none without labels: left NaN)."""
    if not few_shot or probe.labels is None or (pool is not None and pool.labels is None):
        return
    # Without a pool the probe gives the labelled samples and, the others, the queries.
    labelled, queries = (probe, None) if pool is None else (pool, probe)
    for shots in few_shot:
        yield (
            shots,
            few_shot_accuracy(
                labelled.z0,
                labelled.labels,
                None if queries is None else queries.z0,
                None if queries is None else queries.labels,
                shots=shots,
                draws=draws,
                seed=FEW_SHOT_SEED,
                chunk_size=chunk_size,
            ),
        )


def _tolerance_or_nan(z: Tensor, labels: Tensor) -> float:
    try:
        return tolerance(z, labels).item()
    except ValueError as error:  # no two samples share a label
        rank_zero_warn(f"TemperatureAnalysis: tolerance skipped: {error}")
        return math.nan
