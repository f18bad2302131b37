"""Tiny generated training data for the training tests (no files from outside the repository)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def make_images(n: int, size: int = 16, classes: int = 3, channels: int = 3, seed: int = 0):
    """Images whose class decides a bright quadrant and a colour: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, size, size, channels))
    half = size // 2
    for i, c in enumerate(y):
        r0, c0 = (c % 2) * half, ((c // 2) % 2) * half
        x[i, r0 : r0 + half, c0 : c0 + half, c % channels] += 180
    return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)


def write_augmented(out: Path, n_train: int = 96, n_val: int = 24, size: int = 16, classes: int = 3,
                    channels: int = 3) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1), ("test", n_val, 2)):
        x, y = make_images(n, size, classes, channels, seed)
        np.save(out / f"{split}_x.npy", x)
        np.save(out / f"{split}_y.npy", y)
    x = np.load(out / "train_x.npy").astype(np.float64) / 255
    norm = {"mean": [round(float(v), 6) for v in x.mean((0, 1, 2))],
            "std": [round(float(v), 6) for v in x.std((0, 1, 2))]}
    (out / "norm.json").write_text(json.dumps(norm))
    meta = {"classes": [f"c{i}" for i in range(classes)], "height": size, "width": size, "channels": channels,
            "counts": {"train": n_train, "val": n_val, "test": n_val}, "hflip": True}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


