"""The ``train`` section: model, recipe (optimiser, schedule, batch augmentation), resume, processes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from imgpipe.params.base import Section


class TrainParams(Section):
    # airbench: the fast default for small images; lenet: the seed tutorial's network;
    # resnet: a small residual CNN; resnet18: torchvision's, fine-tuned from train.pretrained
    model: Literal["airbench", "lenet", "resnet", "resnet18"] = "airbench"
    width: int = Field(16, ge=0)  # airbench: channels of the first group (0 = the model's own, 32); other models ignore it
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(512, ge=1)  # the global batch (split over the processes under torchrun)
    # Small datasets: the batch shrinks so an epoch has at least this many steps, and the lr shrinks
    # with it (airbench's lr is per example); 1 = always batch_size.
    min_steps_per_epoch: int = Field(8, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.75, gt=0)  # the peak learning rate (of the mean loss over a batch)
    momentum: float = Field(0.85, ge=0, lt=1)  # Nesterov when > 0
    weight_decay: float = Field(0.00133, ge=0)
    bias_lr_scale: float = Field(64.0, gt=0)  # lr (not decay) multiplier for frozen-scale BN biases
    schedule: Literal["triangle", "onecycle", "cosine", "constant"] = "triangle"
    warmup: float = Field(0.23, ge=0, le=1)  # share of the steps spent rising to the peak lr
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    ema: bool = True  # airbench's lookahead weight averaging over the last 70% of the steps
    translate: int = Field(2, ge=0)  # on-the-batch random translation, pixels (0 = off)
    tta: bool = True  # flip test-time augmentation, when augment.hflip says mirrors are valid
    early_stopping_patience: int = Field(0, ge=0)  # stop after this many epochs without a better val acc
    pretrained: str = ""  # resnet18: weights file (path, best under pretrained/, or URL)
    pretrained_sha256: str = ""  # pins train.pretrained's bytes (required for a URL)
    freeze_backbone: bool = False  # resnet18: train the new classifier only
    bf16: bool = True  # bf16 autocast on CPUs with native bf16 units; GPUs always use AMP
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0 = all cores
    nproc: int = Field(1, ge=1)  # processes on this node: > 1 reruns the stage under torchrun (DDP)
    checkpoint_dir: str = ".cache/train"  # resume checkpoints (outside DVC's outputs, gitignored)
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.pretrained and self.model != "resnet18":
            raise ValueError("pretrained weights are only used by model resnet18")
        if self.pretrained.startswith(("http://", "https://", "s3://")) and not self.pretrained_sha256:
            raise ValueError("a pretrained URL needs pretrained_sha256 (its bytes must be pinned)")
        return self
