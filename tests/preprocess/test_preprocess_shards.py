"""Streaming shard writer: bounded files, valid .npy, readable by gather."""

from __future__ import annotations

import numpy as np

from imgpipe.preprocess import shards


def test_writer_splits_at_the_size_limit_and_gather_reads_back(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (23, 4, 5, 3), dtype=np.uint8)
    per_image = 4 * 5 * 3
    max_bytes = shards.HEADER_BYTES + 10 * per_image  # room for exactly 10 images
    writer = shards.ShardWriter(tmp_path, (4, 5, 3), max_bytes)
    got = [writer.add(block) for block in (images[:7], images[7:7], images[7:23])]
    listing = writer.close()
    assert listing == [{"file": shards.shard_name(i), "images": n} for i, n in enumerate([10, 10, 3])]
    shard = np.concatenate([g[0] for g in got])
    offset = np.concatenate([g[1] for g in got])
    assert shard.tolist() == [0] * 10 + [1] * 10 + [2] * 3
    assert offset.tolist() == list(range(10)) * 2 + [0, 1, 2]
    for i in range(3):
        path = tmp_path / shards.shard_name(i)
        assert path.stat().st_size <= max_bytes
        np.testing.assert_array_equal(np.load(path), images[i * 10 : i * 10 + 10])
        assert shards.open_shard(tmp_path, i).dtype == np.uint8
    order = np.array([22, 0, 15, 3])
    np.testing.assert_array_equal(shards.gather(tmp_path, shard[order], offset[order]), images[order])


def test_an_image_bigger_than_the_limit_still_gets_a_shard(tmp_path):
    assert shards.shard_capacity((64, 64, 3), 1000) == 1
    with shards.ShardWriter(tmp_path, (2, 2, 1), 1) as writer:
        writer.add(np.zeros((2, 2, 2, 1), np.uint8))
    assert np.load(tmp_path / shards.shard_name(1)).shape == (1, 2, 2, 1)


def test_header_is_what_numpy_writes(tmp_path):
    array = np.zeros((3, 2, 2, 1), np.uint8)
    np.save(tmp_path / "ref.npy", array)
    assert (tmp_path / "ref.npy").read_bytes()[: shards.HEADER_BYTES] == shards.npy_header(array.shape)
