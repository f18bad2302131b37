"""Splits read from the stores augment indexes: array-like reads over several shards and both
directories, batches decoded in DataLoader workers in the asked order, and training on a JPEG
store that gives the same weights for 0 and 2 decode workers, resumed or not."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from trainkit import make_images, write_augmented

from imgpipe.contracts import load_augmented_meta
from imgpipe.storedsplit import BatchReader, StoredImages, load_split, resolve_workers


def _two_dirs(tmp_path, store: str):
    """36 images in 3 preprocessed shards (12 per shard) and 6 more in augment's own shards."""
    from factories import write_store

    x, _ = make_images(42, size=8)
    s1, o1, pix1 = write_store(tmp_path / "pre", x[:36], store, max_bytes=12 * 8 * 8 * 3 + 128)
    s2, o2, pix2 = write_store(tmp_path / "aug", x[36:], store)
    where = np.r_[np.zeros(36), np.ones(6)].astype(np.int8)
    images = StoredImages({"preprocessed": tmp_path / "pre", "augmented": tmp_path / "aug"}, where,
                          np.r_[s1, s2], np.r_[o1, o2], (8, 8, 3), store != "pixels")
    return images, np.concatenate([pix1, pix2]), int(s1.max()) + 1


@pytest.mark.parametrize("store", ["pixels", "png"])
def test_reads_like_an_array_across_shards_and_directories(tmp_path, store):
    images, want, shards = _two_dirs(tmp_path, store)
    assert shards >= 2 and images.shape == (42, 8, 8, 3) and len(images) == 42
    rows = np.array([41, 0, 13, 37, 25, 12])
    assert np.array_equal(images[rows], want[rows])
    assert np.array_equal(images[-1], want[-1]) and np.array_equal(images[13], want[13])
    view = images[1::4]  # lazy, and slices again like an array
    assert isinstance(view, StoredImages) and np.array_equal(np.asarray(view[2:5]), want[1::4][2:5])
    assert np.array_equal(np.asarray(images), want)
    with pytest.raises(IndexError):
        images[42]
    images.check()
    images.offset[5] = 99  # an index that no longer matches its shards: one clear line, not a crash later
    with pytest.raises(ValueError, match="row 5 points at image 99 of preprocessed shard 0, which holds"):
        StoredImages(images.dirs, images.where, images.shard, images.offset, (8, 8, 3), images.encoded).check()


def test_worker_batches_come_in_the_asked_order(tmp_path):
    images, want, _ = _two_dirs(tmp_path, "jpeg")
    batches = [np.array([40, 1, 20]), np.arange(12, 30), np.array([5]), np.arange(36, 42)]
    with BatchReader(images, 2) as read:
        for _ in range(2):  # the same worker processes serve a second pass
            got = [b.numpy() for b in read(batches)]
            assert all(np.array_equal(g, want[b]) for g, b in zip(got, batches, strict=True))
    assert resolve_workers("auto", want) == 0 and resolve_workers("auto", images) >= 1
    assert resolve_workers(3, images) == 3


def _fit(aug, workers: int, epochs: int, state=None, opt_state=None, rng=None, stop_after=None):
    from imgpipe.inference import make_model
    from imgpipe.params.train import TrainParams
    from imgpipe.torchenv import configure
    from imgpipe.train.loop import fit

    cfg = TrainParams(model="lenet", epochs=epochs, batch_size=16, lr=0.05, threads=1, seed=3, bf16=False,
                      decode_workers=workers)
    configure(1, cfg.seed)
    meta, norm = load_augmented_meta(aug)
    model = make_model("lenet", meta, norm)
    saved = {}
    if state is not None:
        model.load_state_dict(state["model"])
        torch.set_rng_state(rng)

    def on_epoch(st, mdl, optimizer):
        if st.epoch == stop_after:
            saved.update(model=copy.deepcopy(mdl.state_dict()), loop=copy.deepcopy(st),
                         opt=copy.deepcopy(optimizer.state_dict()), rng=torch.get_rng_state())

    fit(model, load_split(aug, "train"), load_split(aug, "val"), cfg, flip=True, device=torch.device("cpu"),
        state=state and state["loop"], optimizer_state=opt_state, on_epoch=on_epoch)
    return model.state_dict(), saved


def test_training_on_a_jpeg_store_is_the_same_for_any_worker_count_and_resumes_exactly(tmp_path):
    aug = write_augmented(tmp_path / "data" / "augmented", n_train=48, n_val=8, size=16, store="jpeg", copies=1)
    plain, half = _fit(aug, workers=0, epochs=2, stop_after=1)
    workers, _ = _fit(aug, workers=2, epochs=2)
    resumed, _ = _fit(aug, workers=2, epochs=2, state=half, opt_state=half["opt"], rng=half["rng"])
    for key in plain:
        assert torch.equal(plain[key], workers[key]), key
        assert torch.equal(plain[key], resumed[key]), key
