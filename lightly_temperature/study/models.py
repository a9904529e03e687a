"""Backbones of the temperature study: the package's small CNN for tiny images (8x8 digits),
the paper's ResNet-18 with a 3x3 first convolution for 32x32 images.

Example:
    >>> from lightly_temperature.study.models import build_backbone
    >>> backbone, feature_dim = build_backbone("small_cnn", in_channels=1)
    >>> backbone(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

from torch import nn

from lightly_temperature.models.backbones import SmallCNN, resnet18_backbone

BACKBONES = ("small_cnn", "resnet18")


def build_backbone(name: str, in_channels: int) -> tuple[nn.Module, int]:
    """``(backbone, feature_dim)`` for a name in :data:`BACKBONES`; ``small_cnn`` is
    :class:`lightly_temperature.models.backbones.SmallCNN` (width 32, 128 features)."""
    if name == "small_cnn":
        cnn = SmallCNN(in_channels)
        return cnn, cnn.feature_dim
    if name == "resnet18":
        return resnet18_backbone(in_channels, cifar_stem=True), 512
    raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {name!r}")
