"""The loss family of Wang & Liu (CVPR 2021), the reweighted hard negatives of Robinson et al.
(HCL) and Chuang et al. (debiased) and the decoupled loss of Yeh et al. (DCL), drop-ins for
``lightly.loss.NTXentLoss``.

Each loss is a :class:`PairwiseLoss` composed of a layout (SimCLR, MoCo, DDP, or a
:class:`SampleMemoryBank` indexed by sample, NPID), a selection of
negatives (all or top-K), a reduction (log-sum-exp, linear, importance-weighted or decoupled) and a
temperature; each class declares its :class:`LossCapabilities`.
"""

from lightly_temperature.functional import PAPER_ALPHA
from lightly_temperature.losses.capabilities import LossCapabilities
from lightly_temperature.losses.decoupled_contrastive_loss import DecoupledContrastiveLoss
from lightly_temperature.losses.hard_contrastive_loss import ContrastiveLoss, HardContrastiveLoss
from lightly_temperature.losses.hard_simple_loss import HardSimpleLoss
from lightly_temperature.losses.hcl_loss import DebiasedContrastiveLoss, HCLLoss
from lightly_temperature.losses.layout import PairLayout, observe_similarities
from lightly_temperature.losses.pairwise_loss import PairwiseLoss
from lightly_temperature.losses.reduction import (
    DecoupledReduction,
    ImportanceWeightedReduction,
    LinearReduction,
    LogSumExpReduction,
    Reduction,
)
from lightly_temperature.losses.sample_memory_bank import SampleMemoryBank
from lightly_temperature.losses.selection import AllNegatives, NegativeSelection, TopKNegatives
from lightly_temperature.losses.simple_loss import SimpleLoss
from lightly_temperature.similarity_batch import SimilarityBatch

__all__ = [
    "PAPER_ALPHA",
    "AllNegatives",
    "ContrastiveLoss",
    "DebiasedContrastiveLoss",
    "DecoupledContrastiveLoss",
    "DecoupledReduction",
    "HCLLoss",
    "HardContrastiveLoss",
    "HardSimpleLoss",
    "ImportanceWeightedReduction",
    "LinearReduction",
    "LogSumExpReduction",
    "LossCapabilities",
    "NegativeSelection",
    "PairLayout",
    "PairwiseLoss",
    "Reduction",
    "SampleMemoryBank",
    "SimilarityBatch",
    "SimpleLoss",
    "TopKNegatives",
    "observe_similarities",
]
