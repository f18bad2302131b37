"""Tiny generated training data for the training tests (no files from outside the repository)."""

from __future__ import annotations

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
                    channels: int = 3, store: str = "pixels", copies: int = 0) -> Path:
    """A preprocessed store in ``out.parent / "preprocessed"`` and the augment stage's output for it in
    ``out`` (made by the real :func:`imgpipe.augment.build`)."""
    from imgpipe.augment import build
    from imgpipe.params.augment import AugmentParams

    from factories import split_frame, write_store

    parts = [make_images(n, size, classes, channels, seed) for n, seed in ((n_train, 0), (n_val, 1), (n_val, 2))]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_val
    pre = out.parent / "preprocessed"
    shard, offset, _ = write_store(pre, x, store)
    dataset = split_frame([f"img{i:04d}.png" for i in range(len(x))], y, splits, shard, offset)
    out.mkdir(parents=True, exist_ok=True)
    build(dataset, pre, out, AugmentParams(copies=copies, hflip=True), [f"c{i}" for i in range(classes)])
    return out
