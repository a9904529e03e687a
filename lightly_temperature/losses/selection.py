"""The selection part of a loss: which negatives of each anchor enter its reduction.

- :class:`AllNegatives`: every negative (InfoNCE, Simple).
- :class:`TopKNegatives`: the K most similar negatives of each anchor, K given as an int or as
  a fraction alpha of the negatives available (Wang & Liu's hard losses).

Example:
    >>> TopKNegatives(0.0819).num_selected(50_000)  # the paper's K
    4095
    >>> AllNegatives().num_selected(50_000) is None  # None: no selection, all of them
    True
"""

from __future__ import annotations

from lightly_temperature._validation import HardNegatives, check_hard_negatives
from lightly_temperature.functional import resolve_hard_negatives


class NegativeSelection:
    """Base class: ``num_selected(num_negatives)`` is the K to keep, ``None`` for all."""

    #: The ``hard_negatives`` argument this selection stands for (None: all negatives).
    hard_negatives: HardNegatives = None

    def num_selected(self, num_negatives: int) -> int | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hard_negatives!r})"


class AllNegatives(NegativeSelection):
    """Every negative of the anchor."""

    def num_selected(self, num_negatives: int) -> int | None:
        return None

    def __repr__(self) -> str:
        return "AllNegatives()"


class TopKNegatives(NegativeSelection):
    """The K negatives most similar to each anchor (ties broken as ``torch.topk`` does).

    Args:
        hard_negatives: an int K >= 1 (clamped to the negatives available: a small last batch
            is not an error) or a float alpha in (0, 1] meaning ``round(alpha * negatives)``,
            at least one.
    """

    def __init__(self, hard_negatives: int | float) -> None:
        if hard_negatives is None:
            raise ValueError("hard_negatives of TopKNegatives must be an int or a float, got None")
        self.hard_negatives = check_hard_negatives(hard_negatives)

    def num_selected(self, num_negatives: int) -> int | None:
        k = resolve_hard_negatives(self.hard_negatives, num_negatives)
        return None if k >= num_negatives else k  # all of them: no selection to make


def selection_for(hard_negatives: HardNegatives) -> NegativeSelection:
    """:class:`AllNegatives` for ``None``, else :class:`TopKNegatives` (checked)."""
    if hard_negatives is None:
        return AllNegatives()
    return TopKNegatives(hard_negatives)
