"""``SimilarityBatch``: the similarities one contrastive-loss call compares, as values.

The type the losses' layouts produce and the metrics consume (neither imports the other).

Example:
    >>> import torch
    >>> from lightly_temperature.similarity_batch import SimilarityBatch
    >>> batch = SimilarityBatch(torch.tensor([0.5]), torch.tensor([[0.25, -0.45]]), 2, 0.5)
    >>> batch.num_anchors
    1
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class SimilarityBatch:
    """Cosine similarities of one loss call's anchors to their positives and negatives.

    Attributes:
        positive: ``(A,)`` similarity of each anchor to its positive.
        negatives: ``(A, C)`` similarities to the candidate negatives; ``-inf`` marks the
            entries that are not negatives (the anchor itself and its positive in SimCLR mode).
        num_negatives: real negatives per anchor (``2M - 2`` in SimCLR mode, the bank size in
            MoCo mode).
        temperature: the temperature of the call (a number, a 0-d tensor, or an ``(A,)``
            tensor: one τ per anchor).
    """

    positive: Tensor
    negatives: Tensor
    num_negatives: int
    temperature: float | Tensor

    @property
    def num_anchors(self) -> int:
        return self.positive.shape[0]

    def detach(self) -> SimilarityBatch:
        temperature = self.temperature
        if isinstance(temperature, Tensor):
            temperature = temperature.detach()
        return SimilarityBatch(
            self.positive.detach(), self.negatives.detach(), self.num_negatives, temperature
        )
