"""The batch data path: epoch orders, rank shards, on-the-batch flip/translate."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imgpipe.train.data import batch_generator, epoch_batches, flip_translate_batch


@pytest.mark.parametrize("n,batch,world", [(10, 4, 1), (10, 4, 2), (7, 1024, 2), (1, 8, 1), (33, 8, 3)])
def test_every_sample_exactly_once_per_epoch_across_ranks(n, batch, world):
    for epoch in range(2):
        per_rank = [epoch_batches(n, batch, 5, epoch, r, world) for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1  # DDP: the same number of steps on every rank
        seen = np.concatenate([i for batches in per_rank for i in batches])
        assert sorted(seen.tolist()) == list(range(n))


def test_epoch_orders_are_seeded_and_differ_between_epochs():
    a = np.concatenate(epoch_batches(100, 10, 1, 0))
    assert np.array_equal(a, np.concatenate(epoch_batches(100, 10, 1, 0)))
    assert not np.array_equal(epoch_batches(100, 10, 1, 0)[0], epoch_batches(100, 10, 1, 1)[0])


def _reference(x, flip, dy, dx, r):
    """One image the slow way: reflect-pad, crop, mirror."""
    t = x.permute(2, 0, 1)[None].float()
    p = F.pad(t, (r, r, r, r), mode="reflect")[0]
    h, w = x.shape[:2]
    out = p[:, r + dy : r + dy + h, r + dx : r + dx + w]
    if flip:
        out = out.flip(2)
    return out.permute(1, 2, 0).to(x.dtype)


def test_batch_flip_translate_matches_pad_crop_reference():
    x = torch.randint(0, 256, (64, 8, 10, 3), dtype=torch.uint8)
    gen = batch_generator(3, 0)
    out = flip_translate_batch(x, gen, flip=True, translate=2)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    # Replay the draws to check each image against the reference.
    g2 = batch_generator(3, 0)
    shifts = torch.randint(-2, 3, (64, 2), generator=g2)
    flips = torch.rand(64, generator=g2) < 0.5
    for i in range(64):
        ref = _reference(x[i], bool(flips[i]), int(shifts[i, 0]), int(shifts[i, 1]), 2)
        assert torch.equal(out[i], ref)
    assert flips.any() and (~flips).any() and (shifts != 0).any()


def test_batch_augmentation_off_is_identity():
    x = torch.randint(0, 256, (4, 5, 5, 1), dtype=torch.uint8)
    assert flip_translate_batch(x, batch_generator(0, 0), flip=False, translate=0) is x
