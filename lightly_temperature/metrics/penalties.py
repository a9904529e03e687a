"""How the contrastive loss spreads its penalty over the negatives (Wang & Liu's r_i).

Functions of similarity values, per anchor:

- :func:`effective_number_of_negatives`: ``exp`` of the entropy of the relative penalties, how
  many negatives the loss really listens to at this τ: N when every negative is as similar,
  1 when only the hardest one counts (τ → 0); :func:`effective_negatives_of_views` computes
  it from embeddings, in SimCLR's layout;
- :func:`top_k_penalty_share`: the share of the penalty mass on the k hardest negatives;
- :func:`same_label_penalty_mass`: the penalty mass on negatives that share the anchor's
  label (false negatives): the uniformity-tolerance dilemma in one number
  (:func:`same_label_penalty_mass_of_views` computes it from embeddings).

Example:
    >>> import torch
    >>> negatives = torch.tensor([[0.9, 0.1, 0.1, 0.1]])
    >>> effective_number_of_negatives(negatives, temperature=10.0)  # nearly uniform: ~4
    tensor([3.9952])
    >>> effective_number_of_negatives(negatives, temperature=0.01)  # only the hardest: 1
    tensor([1.])
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

from lightly_temperature._validation import (
    HardNegatives,
    check_hard_negatives,
    check_int,
    check_temperature,
)
from lightly_temperature.functional import (
    Temperature,
    relative_penalties,
    resolve_hard_negatives,
)
from lightly_temperature.kernels import top_k_indices, top_k_values
from lightly_temperature.metrics._common import (
    DEFAULT_CHUNK_SIZE,
    check_chunk_size,
    check_pair,
    chunks,
)


def effective_number_from_penalties(penalties: Tensor) -> Tensor:
    """``exp(-Σ_j r_j log r_j)`` of each row of relative penalties (rows summing to 1)."""
    return torch.exp(torch.special.entr(penalties).sum(dim=1))


def effective_number_of_negatives(
    negatives: Tensor, temperature: Temperature, hard_negatives: HardNegatives = None
) -> Tensor:
    """How many negatives each anchor's loss really listens to: ``exp(H(r))``, ``(A,)``.

    ``r_j = exp(s_j/τ) / Σ_k exp(s_k/τ)`` are the paper's relative penalties over the anchor's
    negatives (its top-K with ``hard_negatives``); their entropy's exponential is N (the
    number of negatives) when all similarities are equal and tends to 1 as τ → 0 with one
    hardest negative.

    Args:
        negatives: ``(A, C)`` (or ``(C,)``) similarities; ``-inf`` marks non-negatives.
        temperature: τ > 0.
        hard_negatives: the loss's K or fraction alpha; ``None`` for all negatives.
    """
    return effective_number_from_penalties(
        relative_penalties(negatives, temperature, hard_negatives)
    )


def top_k_penalty_share(
    negatives: Tensor, temperature: Temperature, k: int = 10, hard_negatives: HardNegatives = None
) -> Tensor:
    """The share of each anchor's penalty mass on its ``k`` hardest negatives, ``(A,)``.

    1 when the k hardest take everything (τ → 0), ``k / N`` for equal similarities.
    """
    check_int(k, "k", minimum=1)
    penalties = relative_penalties(negatives, temperature, hard_negatives)
    return top_k_values(penalties, min(k, penalties.shape[1])).sum(dim=1)


def check_labels(labels: Tensor, expected: int, name: str = "labels") -> Tensor:
    """``labels`` must be a 1-D tensor of ``expected`` entries (one per sample)."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != expected:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be a 1-D tensor of {expected} labels, got {shape}")
    return labels


def same_label_penalty_mass(
    negatives: Tensor,
    temperature: Temperature,
    anchor_labels: Tensor,
    candidate_labels: Tensor,
    hard_negatives: HardNegatives = None,
) -> Tensor:
    """The penalty mass each anchor puts on negatives of its own label, ``(A,)``.

    Args:
        negatives: ``(A, C)`` similarities; ``-inf`` marks non-negatives (they get no mass).
        temperature: τ > 0.
        anchor_labels: ``(A,)`` labels of the anchors.
        candidate_labels: ``(C,)`` labels of the candidates (the columns).
        hard_negatives: the loss's K or fraction alpha; ``None`` for all negatives.
    """
    if negatives.dim() == 1:
        negatives = negatives.unsqueeze(0)
    check_labels(anchor_labels, negatives.shape[0], "anchor_labels")
    check_labels(candidate_labels, negatives.shape[1], "candidate_labels")
    penalties = relative_penalties(negatives, temperature, hard_negatives)
    same = anchor_labels.to(negatives.device).unsqueeze(1) == candidate_labels.to(
        negatives.device
    ).unsqueeze(0)
    return (penalties * same).sum(dim=1)


def _view_negatives(z0: Tensor, z1: Tensor, chunk_size: int) -> Iterator[tuple[int, int, Tensor]]:
    """Per chunk of anchors ``z0[start:stop]``: their cosine similarities ``(c, 2N)`` to both
    views of every sample, ``-inf`` at the anchor itself and at its positive (SimCLR)."""
    n = z0.shape[0]
    candidates = F.normalize(torch.cat([z0, z1]), dim=1)
    anchors = candidates[:n]
    for start, stop in chunks(n, chunk_size):
        sims = anchors[start:stop] @ candidates.T
        rows = torch.arange(stop - start, device=sims.device)
        sims[rows, rows + start] = float("-inf")  # the anchor itself
        sims[rows, rows + start + n] = float("-inf")  # its positive
        yield start, stop, sims


def effective_negatives_of_views(
    z0: Tensor,
    z1: Tensor,
    temperature: Temperature,
    hard_negatives: HardNegatives = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """:func:`effective_number_of_negatives` of each anchor ``z0[i]`` in SimCLR's layout, ``(N,)``.

    The negatives of anchor i are both views of every other sample, ``z0[j]`` and ``z1[j]``
    (j != i, 2N - 2 of them), compared by cosine similarity; ``hard_negatives`` (K or a
    fraction of the 2N - 2) keeps the K most similar, as the hard loss does. Extra memory
    O(chunk_size x N).
    """
    z0, z1 = check_pair(z0, z1, min_rows=2)
    chunk_size = check_chunk_size(chunk_size)
    n = z0.shape[0]
    temperature = check_temperature(temperature)
    k = resolve_hard_negatives(check_hard_negatives(hard_negatives), 2 * n - 2)
    out = []
    for _, _, sims in _view_negatives(z0, z1, chunk_size):
        # The K hardest values alone (no index): their penalties are those of the loss.
        used = sims if k == 2 * n - 2 else top_k_values(sims, k)
        out.append(effective_number_from_penalties(torch.softmax(used / temperature, dim=1)))
    return torch.cat(out)


def same_label_penalty_mass_of_views(
    z0: Tensor,
    z1: Tensor,
    labels: Tensor,
    temperature: Temperature,
    hard_negatives: HardNegatives = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """:func:`same_label_penalty_mass` of each anchor ``z0[i]`` in SimCLR's layout, ``(N,)``:
    the share of its penalty (over the negatives of :func:`effective_negatives_of_views`, or
    their K most similar) that goes to both views of the other samples of its label."""
    z0, z1 = check_pair(z0, z1, min_rows=2)
    chunk_size = check_chunk_size(chunk_size)
    n = z0.shape[0]
    check_labels(labels, n)
    temperature = check_temperature(temperature)
    k = resolve_hard_negatives(check_hard_negatives(hard_negatives), 2 * n - 2)
    labels = labels.to(z0.device)
    candidate_labels = labels.repeat(2)
    out = []
    for start, stop, sims in _view_negatives(z0, z1, chunk_size):
        if k == 2 * n - 2:
            used, used_labels = sims, candidate_labels.unsqueeze(0)
        else:
            index = top_k_indices(sims, k).to(sims.device)
            used, used_labels = sims.gather(1, index), candidate_labels[index]
        penalties = torch.softmax(used / temperature, dim=1)
        same = used_labels == labels[start:stop].unsqueeze(1)
        out.append((penalties * same).sum(dim=1))
    return torch.cat(out)
