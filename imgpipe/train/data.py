"""Training inputs: epoch orders, rank shards, batch reads and batch augmentation.

The arrays are the augment stage's, memory-mapped (``imgpipe.storedsplit.load_split``: the shards augment indexes).

Everything on the hot path works on whole batches: a batch is one fancy-index read from the
memory-mapped array, and flip + translation is one gather on the uint8 batch (no per-image Python).
"""

from __future__ import annotations

import numpy as np


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's batches of one epoch: indices into the train split.

    The epoch's order is one seeded permutation shared by all ranks; rank ``r`` takes every
    ``world``-th position, so every sample is seen exactly once per epoch across the ranks (no
    padding, no dropping). ``batch_size`` is the global batch: every rank runs the same number of
    steps (DDP needs that), each with about ``batch_size / world`` samples.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n)
    steps = max(1, -(-n // batch_size))
    shard = order[rank::world]
    return [np.sort(b) for b in np.array_split(shard, steps)]


def read_batch(split, idx: np.ndarray):
    """``(x uint8 NHWC, y int64)`` tensors for sorted indices (one read from the memory map)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(split.x[idx])), torch.from_numpy(split.y[idx])


def _reflect(pos, size: int):
    """Reflect positions outside ``[0, size)`` back inside (like ``F.pad(mode='reflect')``)."""
    import torch

    if size == 1:
        return torch.zeros_like(pos)
    period = 2 * (size - 1)
    pos = torch.remainder(pos, period)
    return torch.where(pos >= size, period - pos, pos)


def flip_translate_batch(x, generator, flip: bool, translate: int):
    """Random horizontal flip and translation by up to ``translate`` pixels (reflected borders) of a
    whole ``(B, H, W, C)`` batch in one gather; works on uint8 as well as floats."""
    import torch

    if not flip and translate <= 0:
        return x
    b, h, w, _ = x.shape
    rows = torch.arange(h).expand(b, h)
    cols = torch.arange(w).expand(b, w)
    if translate > 0:
        shifts = torch.randint(-translate, translate + 1, (b, 2), generator=generator)
        rows = _reflect(rows + shifts[:, :1], h)
        cols = _reflect(cols + shifts[:, 1:], w)
    if flip:
        flipped = torch.rand(b, generator=generator) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    return x[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def batch_generator(seed: int, epoch: int, rank: int = 0):
    """The batch-augmentation generator of one epoch on one rank (seeded by the epoch, so a resumed
    run draws what an uninterrupted one would)."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(np.random.default_rng([seed, epoch, 1, rank]).integers(2**62)))
    return g
