"""lightly-temperature: temperature and hardness of contrastive losses, as a Lightly plugin.

Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021.
"""

from lightly_temperature import functional
from lightly_temperature.adapters import use_loss
from lightly_temperature.functional import contrastive_loss, relative_penalties, simple_loss
from lightly_temperature.losses import (
    PAPER_ALPHA,
    HardContrastiveLoss,
    HardSimpleLoss,
    PairwiseLoss,
    SimilarityBatch,
    SimpleLoss,
)
from lightly_temperature.models import MoCo, SimCLR
from lightly_temperature.registry import available_losses, build_loss, register_loss

__version__ = "0.1.0"

__all__ = [
    "PAPER_ALPHA",
    "HardContrastiveLoss",
    "HardSimpleLoss",
    "MoCo",
    "PairwiseLoss",
    "SimCLR",
    "SimilarityBatch",
    "SimpleLoss",
    "available_losses",
    "build_loss",
    "contrastive_loss",
    "functional",
    "register_loss",
    "relative_penalties",
    "simple_loss",
    "use_loss",
]
