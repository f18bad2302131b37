"""torchvision's ResNet-18, fine-tuned from a pretrained weights file (never from a model hub).

``train.pretrained`` names the weights (a path, best under ``pretrained/`` which DVC watches, or
an http(s)/s3 URL pinned by ``train.pretrained_sha256``). The file must hold a plain state_dict of
``torchvision.models.resnet18`` (as torchvision's own ``resnet18-*.pth`` files do); it is read with
``torch.load(weights_only=True)``. The ImageNet classifier is replaced by a fresh one for our
classes; ``train.freeze_backbone`` trains that classifier only (and keeps the backbone's BN
statistics as they were).
"""

from __future__ import annotations

import torch
from torch import nn


class TorchvisionResNet18(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, size: tuple[int, int] = (32, 32),
                 freeze_backbone: bool = False):
        super().__init__()
        from torchvision.models import resnet18

        if in_channels not in (1, 3):
            raise ValueError(f"resnet18 takes 1- or 3-channel images, got {in_channels} channels")
        self.in_channels = in_channels
        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Linear(self.backbone.fc.in_features, num_classes)
        if in_channels == 1:  # greyscale: the pretrained RGB filters are summed over the channels
            self.backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.freeze_backbone = freeze_backbone

    def load_pretrained(self, state: dict, source: str) -> None:
        """Load ImageNet-style weights (``fc.*`` is dropped: our classifier is new)."""
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if self.in_channels == 1 and "conv1.weight" in state and state["conv1.weight"].shape[1] == 3:
            state["conv1.weight"] = state["conv1.weight"].sum(1, keepdim=True)
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{source}: not torchvision resnet18 weights "
                             f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
        if self.freeze_backbone:
            for name, p in self.backbone.named_parameters():
                p.requires_grad = name.startswith("fc.")

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze_backbone:
            for m in self.backbone.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)
