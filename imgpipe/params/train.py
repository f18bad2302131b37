"""The ``train`` section: model, optimiser and schedule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from imgpipe.params.base import Section


class TrainParams(Section):
    model: Literal["lenet", "resnet"] = "lenet"
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    bf16: bool = True
    threads: int = Field(0, ge=0)
    seed: int = Field(42, ge=0)
