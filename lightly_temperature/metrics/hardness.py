"""Per-step hardness statistics of the similarities one loss call compares.

Example:
    >>> import torch
    >>> from lightly_temperature import HardContrastiveLoss
    >>> from lightly_temperature.metrics import hardness_statistics
    >>> loss_fn = HardContrastiveLoss(temperature=0.5, hard_negatives=None)
    >>> batch = loss_fn.similarities(torch.randn(8, 16), torch.randn(8, 16))
    >>> stats = hardness_statistics(batch, k=10)
    >>> sorted(stats)  # doctest: +NORMALIZE_WHITESPACE
    ['effective_negatives', 'penalty_entropy', 'positive_probability', 'positive_similarity',
     'temperature', 'top10_negative_similarity', 'top10_penalty_share']
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightly_temperature._validation import HardNegatives, check_hard_negatives, check_int
from lightly_temperature.functional import (
    info_nce_from_logits,
    relative_penalties,
    resolve_hard_negatives,
    top_k_negatives,
)
from lightly_temperature.kernels import top_k_indices, top_k_values
from lightly_temperature.metrics.false_negatives import same_label_fraction
from lightly_temperature.metrics.penalties import check_labels
from lightly_temperature.similarity_batch import SimilarityBatch


def hardness_statistics(
    batch: SimilarityBatch,
    hard_negatives: HardNegatives = None,
    k: int = 10,
    anchor_labels: Tensor | None = None,
    candidate_labels: Tensor | None = None,
) -> dict[str, Tensor]:
    """Mean statistics of one loss call's similarities, as 0-d tensors on their device.

    - ``positive_similarity``: mean ``s_ii``.
    - ``top{k}_negative_similarity``: mean of each anchor's k largest negative similarities.
    - ``positive_probability``: mean ``P_ii = exp(s_ii/tau) / (exp(s_ii/tau) + sum_k
      exp(s_ik/tau))`` over the negatives the loss uses (its top-K with ``hard_negatives``),
      i.e. ``exp(-L_i)`` of the contrastive loss.
    - ``penalty_entropy``: mean entropy (nats) of the relative penalties ``r_i`` over the same
      negatives: ``log K`` when all negatives weigh the same (large tau), 0 when only the
      hardest one matters (tau -> 0).
    - ``effective_negatives``: mean ``exp`` of that entropy, how many negatives each anchor's
      loss really listens to (N for equal similarities, 1 when only the hardest counts).
    - ``top{k}_penalty_share``: mean share of the penalty mass on the k hardest negatives.
    - ``temperature``: the call's tau (the mean over the anchors for a per-anchor τ, with
      ``temperature_min`` and ``temperature_max``).

    With the labels of the anchors ``(A,)`` and of the candidates ``(C,)`` (the columns of
    ``batch.negatives``), also:

    - ``top{k}_false_negative_rate``: mean fraction of each anchor's k hardest negatives that
      share its label;
    - ``false_negative_penalty_mass``: mean penalty mass on the negatives sharing its label.

    Nothing is read back to the host. Returns an empty dict when the call had no negatives.
    """
    check_int(k, "k", minimum=1)
    hard_negatives = check_hard_negatives(hard_negatives)
    if (anchor_labels is None) != (candidate_labels is None):
        raise ValueError(
            "anchor_labels and candidate_labels must be given together, got "
            f"anchor_labels={'a tensor' if anchor_labels is not None else None} and "
            f"candidate_labels={'a tensor' if candidate_labels is not None else None}"
        )
    if anchor_labels is not None:
        check_labels(anchor_labels, batch.num_anchors, "anchor_labels")
        check_labels(candidate_labels, batch.negatives.shape[1], "candidate_labels")
    if batch.num_negatives < 1:
        return {}
    tau = batch.temperature
    positive = batch.positive.float()
    negatives = batch.negatives.float()
    # One top-K selection serves the loss, the penalties and (when k <= K) the top-k mean:
    # the k largest negatives are among the K largest.
    num_used = resolve_hard_negatives(hard_negatives, batch.num_negatives)
    used = top_k_negatives(negatives, num_used, batch.num_negatives)
    num_top = min(k, batch.num_negatives)
    hardest = None
    if anchor_labels is not None:
        # The columns of the k hardest negatives serve their mean and the false negatives.
        hardest = top_k_indices(negatives, num_top).to(negatives.device)
        top = negatives.gather(1, hardest)
    else:
        top = top_k_values(used if num_top <= num_used else negatives, num_top)
    # A per-anchor τ (A,) divides each anchor's row.
    per_anchor = isinstance(tau, Tensor) and tau.dim() == 1
    tau_rows = tau.unsqueeze(1) if per_anchor else tau
    logits = used / tau_rows
    loss = info_nce_from_logits(positive / tau, logits)  # the loss over its K negatives
    penalties = torch.softmax(logits, dim=1)  # -inf entries get r = 0 and entr(0) = 0
    entropy = torch.special.entr(penalties).sum(dim=1)
    if isinstance(tau, Tensor):
        temperature = tau.detach().float()
    else:  # a fill, not a copy from the host: no synchronisation with a device
        temperature = torch.full((), tau, dtype=positive.dtype, device=positive.device)
    # The penalties grow with the similarity: the k hardest carry the k largest r, whose sum
    # is their log-sum-exp against all of the loss's (all of them when k >= K).
    if num_top >= num_used:
        share = torch.ones_like(positive)
    else:
        share = torch.exp(torch.logsumexp(top / tau_rows, dim=1) - torch.logsumexp(logits, dim=1))
    statistics = {
        "positive_similarity": positive.mean(),
        f"top{k}_negative_similarity": top.mean(),
        "positive_probability": torch.exp(-loss).mean(),
        "penalty_entropy": entropy.mean(),
        "effective_negatives": torch.exp(entropy).mean(),
        f"top{k}_penalty_share": share.mean(),
        "temperature": temperature.mean(),
    }
    if per_anchor:
        statistics["temperature_min"] = temperature.min()
        statistics["temperature_max"] = temperature.max()
    if anchor_labels is not None:
        anchor_labels = anchor_labels.to(negatives.device)
        candidate_labels = candidate_labels.to(negatives.device)
        statistics[f"top{k}_false_negative_rate"] = same_label_fraction(
            hardest, anchor_labels, candidate_labels
        ).mean()
        if used.shape[1] != negatives.shape[1]:  # the top-K's penalties, in their columns
            # τ > 0 per row keeps each row's order: the scaled rows select the same top-K.
            penalties = relative_penalties(negatives / tau_rows, 1.0, num_used)
        same = anchor_labels.unsqueeze(1) == candidate_labels.unsqueeze(0)
        statistics["false_negative_penalty_mass"] = (penalties * same).sum(dim=1).mean()
    return statistics
