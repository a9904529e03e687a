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

from lightly_temperature.models.backbones import SmallCNN

BACKBONES = ("small_cnn", "resnet18")


def cifar_resnet18(in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 with the paper's 3x3 stride-1 first convolution and no max
    pooling (for 32x32 images); returns 512-d pooled features."""
    import torchvision

    resnet = torchvision.models.resnet18()
    resnet.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    resnet.maxpool = nn.Identity()
    resnet.fc = nn.Identity()
    return resnet


def build_backbone(name: str, in_channels: int) -> tuple[nn.Module, int]:
    """``(backbone, feature_dim)`` for a name in :data:`BACKBONES`; ``small_cnn`` is
    :class:`lightly_temperature.models.backbones.SmallCNN` (width 32, 128 features)."""
    if name == "small_cnn":
        cnn = SmallCNN(in_channels)
        return cnn, cnn.feature_dim
    if name == "resnet18":
        return cifar_resnet18(in_channels), 512
    raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {name!r}")
