"""CNN architectures selectable with ``train.model``: one module each, and this registry."""

from __future__ import annotations

from torch import nn

from imgpipe.errors import PipelineError
from imgpipe.models.airbench import AirNet
from imgpipe.models.lenet import LeNet
from imgpipe.models.resnet import ResNet
from imgpipe.models.tvresnet import TorchvisionResNet18  # imports torchvision only when built

ARCHITECTURES = {"airbench": AirNet, "lenet": LeNet, "resnet": ResNet, "resnet18": TorchvisionResNet18}


def build_model(name: str, in_channels: int, num_classes: int, size: tuple[int, int], **options) -> nn.Module:
    """The network ``name`` for images of ``size`` (height, width); a misfit is one clear line."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}: choose one of {', '.join(ARCHITECTURES)}") from None
    try:
        return cls(in_channels, num_classes, size, **options)
    except ValueError as exc:
        # e.g. LeNet on 8x8 images: the image size comes from preprocess.size.
        raise PipelineError(f"train.model={name}: {exc}; set preprocess.size larger or choose another "
                            f"train.model ({', '.join(a for a in ARCHITECTURES if a != name)})") from None
