"""Backbones for the ready modules: Lightly's ResNet-18 and a small CNN for 8x8 digits."""

from __future__ import annotations

import torchvision
from torch import nn

from lightly_temperature._validation import check_int


def resnet18_backbone(in_channels: int = 3, cifar_stem: bool = False) -> nn.Sequential:
    """torchvision's ResNet-18 without its classifier, as in Lightly's examples (512-d features).

    ``cifar_stem=True`` gives the paper's variant for 32x32 images: a 3x3 stride-1 first
    convolution and no max pooling.

    Example:
        >>> backbone = resnet18_backbone()
        >>> backbone(torch.randn(2, 3, 32, 32)).flatten(start_dim=1).shape
        torch.Size([2, 512])
    """
    resnet = torchvision.models.resnet18()
    if cifar_stem or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if cifar_stem else (7, 2, 3)
        resnet.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
    if cifar_stem:
        resnet.maxpool = nn.Identity()
    backbone = nn.Sequential(*list(resnet.children())[:-1])
    backbone.feature_dim = 512  # type: ignore[assignment]
    return backbone


class SmallCNN(nn.Sequential):
    """Three 3x3 conv layers with batch norm, global average pooling: ``4 * width`` features.

    Sized for scikit-learn's 8x8 digits (8 -> 4 -> 2 pixels); trains in seconds on a CPU.

    Example:
        >>> backbone = SmallCNN(in_channels=1, width=32)
        >>> backbone(torch.randn(5, 1, 8, 8)).shape, backbone.feature_dim
        (torch.Size([5, 128]), 128)
    """

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        check_int(in_channels, "in_channels", minimum=1)
        check_int(width, "width", minimum=1)

        def block(cin: int, cout: int, stride: int) -> list:
            return [
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        super().__init__(
            *block(in_channels, width, 1),
            *block(width, 2 * width, 2),
            *block(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        self.feature_dim = 4 * width
