"""Ready LightningModules following Lightly's SimCLR and MoCo examples, loss as an argument."""

from lightly_temperature.models.backbones import SmallCNN, resnet18_backbone
from lightly_temperature.models.moco import MoCo
from lightly_temperature.models.simclr import SimCLR

__all__ = ["MoCo", "SimCLR", "SmallCNN", "resnet18_backbone"]
