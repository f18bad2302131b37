"""The seed tutorial's LeNet-style network."""

from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    """The seed tutorial's LeNet-style network (two 5x5 convs, three linear layers)."""

    def __init__(self, in_channels: int, num_classes: int, size: tuple[int, int] = (32, 32)):
        super().__init__()
        height, width = ((size[0] - 4) // 2 - 4) // 2, ((size[1] - 4) // 2 - 4) // 2
        if height < 1 or width < 1:
            raise ValueError(f"LeNet needs images of at least 16x16 pixels, got {size[0]}x{size[1]}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * height * width, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
