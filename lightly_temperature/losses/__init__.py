"""The loss family of Wang & Liu (CVPR 2021), drop-ins for ``lightly.loss.NTXentLoss``."""

from lightly_temperature.losses._base import PairwiseLoss, SimilarityBatch
from lightly_temperature.losses.hard_contrastive_loss import PAPER_ALPHA, HardContrastiveLoss
from lightly_temperature.losses.simple_loss import HardSimpleLoss, SimpleLoss

__all__ = [
    "PAPER_ALPHA",
    "HardContrastiveLoss",
    "HardSimpleLoss",
    "PairwiseLoss",
    "SimilarityBatch",
    "SimpleLoss",
]
