"""Helpers for the evaluate and predict tests: a small seeded model checkpoint and images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["ant", "bee", "cow"]
SIZE = 16


def save_checkpoint(path: Path, classes=CLASSES, size: int = SIZE, channels: int = 3, seed: int = 0) -> Path:
    """A LeNet with seeded random weights, saved the way the train stage saves one."""
    import torch

    from imgpipe.inference import make_model
    from imgpipe.train.checkpoint import model_checkpoint

    torch.manual_seed(seed)
    meta = {"classes": list(classes), "channels": channels, "height": size, "width": size}
    norm = {"mean": [0.5] * channels, "std": [0.25] * channels}
    model = make_model("lenet", meta, norm)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model_checkpoint(model, "lenet", meta, norm, {}, precision="fp32", bf16=False, tta=False), path)
    return path


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def random_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
