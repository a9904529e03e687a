"""lightly-temperature: temperature and hardness of contrastive losses, as a Lightly plugin.

Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021.
"""

from lightly_temperature import functional, metrics, temperature
from lightly_temperature.adapters import use_loss
from lightly_temperature.callbacks import HardnessMonitor, TemperatureAnalysis, TemperatureSchedule
from lightly_temperature.data import IndexedDataset
from lightly_temperature.functional import contrastive_loss, relative_penalties, simple_loss
from lightly_temperature.losses import (
    PAPER_ALPHA,
    ContrastiveLoss,
    DebiasedContrastiveLoss,
    DecoupledContrastiveLoss,
    HardContrastiveLoss,
    HardSimpleLoss,
    HCLLoss,
    LossCapabilities,
    PairwiseLoss,
    SampleMemoryBank,
    SimpleLoss,
)
from lightly_temperature.metrics import (
    alignment,
    effective_rank,
    hardness_statistics,
    positive_and_top_negative_similarities,
    std_of_l2_normalized,
    tolerance,
    uniformity,
    uniformity_loss,
)
from lightly_temperature.models import NPID, MoCo, SimCLR
from lightly_temperature.registry import (
    available_losses,
    build_loss,
    loss_capabilities,
    register_loss,
)
from lightly_temperature.similarity_batch import SimilarityBatch

__version__ = "0.1.0"

__all__ = [
    "NPID",
    "PAPER_ALPHA",
    "ContrastiveLoss",
    "DebiasedContrastiveLoss",
    "DecoupledContrastiveLoss",
    "HCLLoss",
    "HardContrastiveLoss",
    "HardSimpleLoss",
    "HardnessMonitor",
    "IndexedDataset",
    "LossCapabilities",
    "MoCo",
    "PairwiseLoss",
    "SampleMemoryBank",
    "SimCLR",
    "SimilarityBatch",
    "SimpleLoss",
    "TemperatureAnalysis",
    "TemperatureSchedule",
    "alignment",
    "available_losses",
    "build_loss",
    "contrastive_loss",
    "effective_rank",
    "functional",
    "hardness_statistics",
    "loss_capabilities",
    "metrics",
    "positive_and_top_negative_similarities",
    "register_loss",
    "relative_penalties",
    "simple_loss",
    "temperature",
    "std_of_l2_normalized",
    "tolerance",
    "uniformity",
    "uniformity_loss",
    "use_loss",
]
