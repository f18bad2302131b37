"""The ``train`` section: model, recipe (optimiser, schedule, batch augmentation), resume, processes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from imgpipe.params.base import Section


class TrainParams(Section):
    # airbench: the fast default for small images; lenet: the seed tutorial's network;
    # resnet: a small residual CNN; resnet18: torchvision's, fine-tuned from train.pretrained
    model: Literal["airbench", "lenet", "resnet", "resnet18"] = "airbench"
    # auto (width and epochs): scaled to the train split (imgpipe/train/recipes.py, resolve_scale):
    # small sets get a narrow, short run; from LARGE_TRAIN_SET images airbench94's width and more epochs.
    width: int | Literal["auto"] = "auto"  # airbench: channels of the first group (0 = the model's own, 32); other models ignore it
    epochs: int | Literal["auto"] = "auto"
    batch_size: int = Field(512, ge=1)  # the global batch (split over the processes under torchrun)
    # Small datasets: the batch shrinks so an epoch has at least this many steps, and the lr shrinks
    # with it (airbench's lr is per example); 1 = always batch_size.
    min_steps_per_epoch: int = Field(8, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    # The recipe keys (lr, momentum, weight_decay, bias_lr_scale, label_smoothing): "auto" takes the
    # chosen model's recipe (imgpipe/train/recipes.py); a number set here wins.
    lr: float | Literal["auto"] = "auto"  # the peak learning rate (of the mean loss over a batch)
    momentum: float | Literal["auto"] = "auto"  # Nesterov when > 0
    weight_decay: float | Literal["auto"] = "auto"
    bias_lr_scale: float | Literal["auto"] = "auto"  # lr (not decay) multiplier for frozen-scale BN biases
    schedule: Literal["triangle", "onecycle", "cosine", "constant"] = "triangle"
    warmup: float = Field(0.23, ge=0, le=1)  # share of the steps spent rising to the peak lr
    label_smoothing: float | Literal["auto"] = "auto"
    ema: bool = True  # airbench's lookahead weight averaging over the last 70% of the steps
    translate: int = Field(2, ge=0)  # on-the-batch random translation, pixels (0 = off)
    tta: bool = True  # flip test-time augmentation, when augment.hflip says mirrors are valid
    early_stopping_patience: int = Field(0, ge=0)  # stop after this many epochs without a better val acc
    pretrained: str = ""  # resnet18: weights file (path, best under pretrained/, or URL)
    pretrained_sha256: str = ""  # pins train.pretrained's bytes (required for a URL)
    freeze_backbone: bool = False  # resnet18: train the new classifier only
    # auto: bf16 autocast where native (AVX512-BF16/AMX CPUs, bf16 GPUs), fp16 + GradScaler on older
    # GPUs, else fp32; true: bf16 everywhere (emulated where not native); false: fp32 everywhere.
    # The environment variable IMGPIPE_FORCE_BF16=1/0 overrides it (CI runs the bf16 path anywhere).
    bf16: bool | Literal["auto"] = "auto"
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0 = all cores
    # DataLoader worker processes decoding batches of a JPEG/PNG store (imgpipe.storedsplit); auto:
    # none for raw pixels (memory-mapped reads are faster), cores - 1 (at most 4) for encoded stores.
    # Not in the resume key: the weights are the same for every count.
    decode_workers: int | Literal["auto"] = "auto"
    nproc: int = Field(1, ge=1)  # processes on this node: > 1 reruns the stage under torchrun (DDP)
    checkpoint_dir: str = ".cache/train"  # resume checkpoints (outside DVC's outputs, gitignored)
    seed: int = Field(42, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.width != "auto" and self.width < 0:
            raise ValueError(f"width must be 'auto' or a number >= 0, got {self.width}")
        if self.epochs != "auto" and self.epochs < 1:
            raise ValueError(f"epochs must be 'auto' or a number >= 1, got {self.epochs}")
        for key, lo, hi in (("lr", 0, None), ("momentum", 0, 1), ("weight_decay", 0, None),
                            ("bias_lr_scale", 0, None), ("label_smoothing", 0, 1)):
            value = getattr(self, key)
            if value != "auto" and (value < lo or (hi is not None and value >= hi) or (key == "lr" and value == 0)):
                raise ValueError(f"{key} must be 'auto' or a number in [{lo}, {hi or 'inf'}), got {value}")
        if self.pretrained and self.model != "resnet18":
            raise ValueError("pretrained weights are only used by model resnet18")
        if self.pretrained.startswith(("http://", "https://", "s3://")) and not self.pretrained_sha256:
            raise ValueError("a pretrained URL needs pretrained_sha256 (its bytes must be pinned)")
        return self
