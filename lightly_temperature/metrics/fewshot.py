"""Few-shot accuracy: how well an embedding classifies with a handful of labels per class.

With all labels, kNN and linear accuracy saturate on small data sets and hide what the
temperature does; with one or ten labelled samples per class the embedding's neighbourhoods
decide. The measure: draw ``shots`` labelled samples per class (with a seed), classify each
query by its nearest labelled sample (1-NN, cosine similarity of the L2-normalised
embeddings, Lightly's ``knn_predict`` with ``knn_k = 1``), and average the accuracy over
several seeded draws.

Example:
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> queries = torch.tensor([[1.0, 0.2], [0.2, 1.0], [1.0, 0.1]])
    >>> result = few_shot_accuracy(z, labels, queries, torch.tensor([0, 1, 1]), shots=1)
    >>> round(result.mean, 4), result.accuracies.shape
    (0.6667, torch.Size([10]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.utils.benchmarking import knn_predict
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature._validation import check_int
from lightly_temperature.metrics._common import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    check_matrix,
    chunks,
)
from lightly_temperature.metrics.penalties import check_labels

#: Label draws averaged by default.
DEFAULT_DRAWS = 10


@dataclass(frozen=True)
class FewShotAccuracy:
    """The accuracy of each label draw (``accuracies``, ``(draws,)`` float64), their mean and
    their standard deviation (0 for one draw): the spread due to which samples got labels."""

    accuracies: Tensor

    @property
    def mean(self) -> float:
        return self.accuracies.mean().item()

    @property
    def std(self) -> float:
        return self.accuracies.std().item() if self.accuracies.numel() > 1 else 0.0


def draw_labelled(labels: Tensor, shots: int, draws: int = DEFAULT_DRAWS, seed: int = 0) -> Tensor:
    """Indices of ``shots`` samples of each class, for each of ``draws`` draws.

    Each draw picks, for every class (in sorted label order), ``shots`` of its samples
    uniformly without replacement; one ``torch.Generator`` seeded with ``seed`` makes every
    draw, so the same arguments give the same indices on any machine.

    Returns:
        ``(draws, num_classes * shots)`` indices into ``labels`` (on the CPU).

    Raises:
        ValueError: ``shots`` or ``draws`` < 1, or a class with fewer than ``shots`` samples
            (named, with its count: no class is silently given fewer labels).
    """
    check_int(shots, "shots", minimum=1)
    check_int(draws, "draws", minimum=1)
    labels = labels.detach().cpu()
    classes, counts = torch.unique(labels, return_counts=True)
    short = [(c, n) for c, n in zip(classes.tolist(), counts.tolist()) if n < shots]
    if short:
        named = ", ".join(f"class {c} has {n}" for c, n in short)
        raise ValueError(
            f"shots must be at most the number of labelled samples of every class, got "
            f"shots={shots}: {named}"
        )
    members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    generator = torch.Generator().manual_seed(int(seed))
    picked = torch.empty(draws, len(members) * shots, dtype=torch.long)
    for draw in range(draws):
        for index, samples in enumerate(members):
            choice = torch.randperm(samples.numel(), generator=generator)[:shots]
            picked[draw, index * shots : (index + 1) * shots] = samples[choice]
    return picked


def few_shot_accuracy(
    embeddings: Tensor,
    labels: Tensor,
    queries: Tensor | None = None,
    query_labels: Tensor | None = None,
    shots: int = 1,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> FewShotAccuracy:
    """1-NN accuracy with ``shots`` labelled samples per class, over ``draws`` seeded draws.

    For each draw of :func:`draw_labelled`, every query gets the label of its most similar
    labelled sample (cosine similarity: both sides are L2-normalised; Lightly's
    ``knn_predict`` with ``knn_k = 1``), and the draw's accuracy is the fraction of queries
    whose label that is. Without ``queries``, the samples of ``embeddings`` that were not drawn
    are the queries (one labelled probe serves both roles).

    Args:
        embeddings: ``(N, D)`` samples the labelled ones are drawn from (e.g. the train split).
        labels: ``(N,)`` their integer labels.
        queries: ``(M, D)`` samples to classify (e.g. the test split), or None.
        query_labels: ``(M,)`` their labels; a label absent from ``labels`` is never predicted.
        shots: labelled samples per class, at most the size of the smallest class.
        draws: how many label draws to average.
        seed: seed of the draws.
        chunk_size: queries per chunk: extra memory O(chunk_size x N).

    Returns:
        :class:`FewShotAccuracy`: the accuracy of each draw, their mean and spread.

    Raises:
        ValueError: bad shapes, ``shots`` above a class's size (see :func:`draw_labelled`),
            or no query left.
    """
    pool = check_matrix(embeddings, "embeddings")
    labels = check_labels(labels, pool.shape[0])
    if labels.is_floating_point():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    chunk_size = check_chunk_size(chunk_size)
    if (queries is None) != (query_labels is None):
        raise ValueError("queries and query_labels must be given together, or neither")
    if queries is not None:
        queries = check_matrix(queries, "queries")
        query_labels = check_labels(query_labels, queries.shape[0], "query_labels")
        if queries.shape[1] != pool.shape[1]:
            raise ValueError(
                f"queries must have the embeddings' {pool.shape[1]} features, got shape "
                f"{tuple(queries.shape)}"
            )
    picked = draw_labelled(labels, shots, draws, seed).to(pool.device)
    # Class indices 0..C-1 for knn_predict, whatever the label values.
    classes, class_of = torch.unique(labels.to(pool.device), return_inverse=True)
    pool = F.normalize(pool, dim=1)
    if queries is not None:
        queries = F.normalize(queries.to(device=pool.device, dtype=pool.dtype), dim=1)
        query_labels = query_labels.to(pool.device)
    accuracies = torch.empty(draws, dtype=torch.float64)
    for draw in range(draws):
        support = picked[draw]
        if queries is None:
            held_out = torch.ones(pool.shape[0], dtype=torch.bool, device=pool.device)
            held_out[support] = False
            if not bool(held_out.any()):
                raise ValueError(
                    f"no query left: every one of the {pool.shape[0]} samples is labelled with "
                    f"shots={shots}; pass queries or use fewer shots"
                )
            draw_queries, draw_labels = pool[held_out], labels.to(pool.device)[held_out]
        else:
            draw_queries, draw_labels = queries, query_labels
        accuracies[draw] = _nearest_labelled_accuracy(
            pool[support], class_of[support], classes, draw_queries, draw_labels, chunk_size
        )
    return FewShotAccuracy(accuracies)


def _nearest_labelled_accuracy(
    support: Tensor,
    support_classes: Tensor,
    classes: Tensor,
    queries: Tensor,
    query_labels: Tensor,
    chunk_size: int,
) -> float:
    """Fraction of ``queries`` whose nearest ``support`` row has their label (normalised rows)."""
    bank = support.T.contiguous()
    correct = 0
    for start, stop in chunks(queries.shape[0], chunk_size):
        predicted = knn_predict(
            queries[start:stop], bank, support_classes, classes.numel(), knn_k=1
        )[:, 0]
        correct += int((classes[predicted] == query_labels[start:stop]).sum())
    return correct / queries.shape[0]
