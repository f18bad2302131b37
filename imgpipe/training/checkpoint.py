"""The saved model: a plain dict that :func:`imgpipe.inference.load_checkpoint` rebuilds."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def model_checkpoint(model: nn.Module, arch: str, meta: dict, norm: dict, bf16: bool) -> dict:
    """Everything predict needs besides the code: classes, image size, normalisation, weights."""
    return {
        "arch": arch,
        "classes": meta["classes"],
        "image_size": [meta["height"], meta["width"]],
        "channels": meta["channels"],
        "norm": norm,
        "state_dict": model.state_dict(),
        "bf16": bf16,
    }


def save(checkpoint: dict, path: Path) -> None:
    import torch

    from imgpipe.io import atomic_file

    with atomic_file(path) as tmp:
        torch.save(checkpoint, tmp)
