"""Backbones of the temperature study: a small CNN for tiny images, the paper's ResNet-18.

Example:
    >>> from lightly_temperature.study.models import build_backbone
    >>> backbone, feature_dim = build_backbone("small_cnn", in_channels=1)
    >>> backbone(torch.zeros(4, 1, 8, 8)).shape
    torch.Size([4, 128])
"""

from __future__ import annotations

from torch import nn

BACKBONES = ("small_cnn", "resnet18")


def small_cnn(in_channels: int = 1, width: int = 32, feature_dim: int = 128) -> nn.Module:
    """Two 3x3 conv blocks around a 2x2 max pooling and a linear layer, for 8x8 images
    (scikit-learn's digits): ~150k parameters, ~20 ms per training step of 2 x 256 images on
    one CPU core. Returns ``(N, feature_dim)`` features."""

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(in_channels, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        nn.AdaptiveAvgPool2d(4),  # 4x4 for 8x8 inputs; any input size works
        nn.Flatten(),
        nn.Linear(2 * width * 16, feature_dim),
    )


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
    """``(backbone, feature_dim)`` for a name in :data:`BACKBONES`."""
    if name == "small_cnn":
        return small_cnn(in_channels), 128
    if name == "resnet18":
        return cifar_resnet18(in_channels), 512
    raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {name!r}")
