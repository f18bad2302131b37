"""A small residual CNN in the spirit of airbench."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class _Stage(nn.Module):
    """conv -> pool, then a residual pair of convs."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.down = nn.Sequential(_conv_bn(cin, cout), nn.MaxPool2d(2))
        self.body = nn.Sequential(_conv_bn(cout, cout), _conv_bn(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return x + self.body(x)


class ResNet(nn.Module):
    """A small residual CNN in the spirit of airbench: three pooled stages, BN, GELU."""

    def __init__(self, in_channels: int, num_classes: int, size: tuple[int, int] = (32, 32),
                 widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        if min(size) < 8:
            raise ValueError(f"ResNet needs images of at least 8x8 pixels, got {size[0]}x{size[1]}")
        self.stem = _conv_bn(in_channels, widths[0])
        self.stages = nn.Sequential(
            _Stage(widths[0], widths[0]), _Stage(widths[0], widths[1]), _Stage(widths[1], widths[2])
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(widths[2], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
