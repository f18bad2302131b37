"""Inference shared by evaluate and predict: the saved model, normalisation, batched prediction.

A checkpoint written by the train stage is a plain dict of tensors and JSON-like values, loaded
with ``torch.load(weights_only=True)`` so a file that carries code is refused, never run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgpipe.errors import PipelineError
from imgpipe.models import build_model

# What a checkpoint must hold for load_checkpoint to rebuild the model.
CHECKPOINT_KEYS = ("arch", "classes", "image_size", "channels", "norm", "state_dict")


class Normalize(nn.Module):
    """uint8 NHWC -> normalised float NCHW; part of the saved model so predict needs nothing else."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NHWC memory seen as NCHW is the channels_last layout that CPU and GPU convolutions prefer.
        x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (x - self.mean) / self.std


def make_model(arch: str, meta: dict, norm: dict, options: dict | None = None) -> nn.Sequential:
    """``Normalize`` then the network; ``meta`` holds ``channels``, ``classes``, ``height``, ``width``;
    ``options`` are the architecture's own (``width`` of airbench, ``freeze_backbone`` of resnet18)."""
    net = build_model(arch, meta["channels"], len(meta["classes"]), (meta["height"], meta["width"]),
                      **(options or {}))
    return nn.Sequential(Normalize(norm["mean"], norm["std"]), net)


def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int, bf16: bool = False,
                   tta: bool = False, workers: int = 0) -> torch.Tensor:
    """Float logits (on the CPU) for uint8 NHWC images, batch by batch, on the model's device (AMP on
    a GPU, bf16 autocast on a CPU when ``bf16``); ``tta`` averages with the mirror image (pass the
    checkpoint's ``tta``). ``x`` may be an array or a stored split (:mod:`imgpipe.storedsplit`),
    whose batches then decode in ``workers`` processes."""
    from imgpipe.storedsplit import BatchReader, sequential_batches
    from imgpipe.torchenv import autocast

    device = next(model.parameters()).device
    model.eval()
    outs = []
    with torch.no_grad(), autocast(device, bf16 or device.type == "cuda"), BatchReader(x, workers) as read:
        for batch in read(sequential_batches(x.shape[0], batch_size)):
            batch = batch.to(device)
            logits = model(batch).float()
            if tta:
                logits = (logits + model(batch.flip(2)).float()) / 2
            outs.append(logits.cpu())
    if not outs:
        return torch.zeros((0, 0))
    return torch.cat(outs)


def load_checkpoint(path: Path | str) -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint written by the train stage (never unpickles code)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code, RuntimeError/EOFError for junk bytes
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{path}: not a model checkpoint this project can load safely ({detail}); "
                            "rebuild it with `dvc repro -f train`") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise PipelineError(f"{path}: not a model checkpoint (missing {', '.join(missing)}); "
                            "rebuild it with `dvc repro -f train`")
    meta = {"channels": checkpoint["channels"], "classes": checkpoint["classes"],
            "height": checkpoint["image_size"][0], "width": checkpoint["image_size"][1]}
    options = checkpoint.get("model_options") or {}
    try:
        model = make_model(checkpoint["arch"], meta, checkpoint["norm"], options)
    except (PipelineError, TypeError) as exc:
        raise PipelineError(f"{path}: cannot rebuild its {checkpoint['arch']} model ({exc}); "
                            "rebuild it with `dvc repro -f train`") from None
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise PipelineError(f"{path}: weights do not fit a {checkpoint['arch']} model "
                            f"({str(exc).splitlines()[0]}); rebuild it with `dvc repro -f train`") from None
    bad = [k for k, v in checkpoint["state_dict"].items()
           if isinstance(v, torch.Tensor) and v.dtype.is_floating_point and not torch.isfinite(v).all()]
    if bad:  # a diverged run: its predictions would be one class, its scores meaningless
        raise PipelineError(f"{path}: the model's weights are not finite ({len(bad)} tensors hold NaN/inf, "
                            f"first {bad[0]}); retrain it (`dvc repro train`, in fp32 with -S train.bf16=false)")
    model.eval()
    return model, checkpoint


def inference_options(checkpoint: dict, tta: bool | str = "model") -> dict:
    """``bf16`` and ``tta`` for :func:`predict_logits`, the same for evaluate and predict so their
    labels cannot drift: bf16 as the model was trained; flip TTA as asked, or with ``"model"`` as
    the training recipe chose (on only when mirrored images are valid for the data)."""
    return {
        "bf16": bool(checkpoint.get("bf16", False)),
        "tta": bool(checkpoint.get("tta", False)) if tta == "model" else bool(tta),
    }
