"""Ready LightningModules following Lightly's SimCLR and MoCo examples, and NPID (the
paper's protocol), loss as an argument."""

from lightly_temperature.models.backbones import SmallCNN, resnet18_backbone
from lightly_temperature.models.moco import MoCo
from lightly_temperature.models.npid import NPID
from lightly_temperature.models.simclr import SimCLR

__all__ = ["NPID", "MoCo", "SimCLR", "SmallCNN", "resnet18_backbone"]
