"""preprocess.store: raw pixel shards or encoded (JPEG/PNG) shards, read back by the same readers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from ppkit import cfg, encode, rgb, solid, write_raw

from imgpipe.errors import PipelineError
from imgpipe.io import read_parquet
from imgpipe.preprocess.pipeline import preprocess_images
from imgpipe.preprocess.shards import gather, is_encoded, open_shard


def photos(n: int) -> dict[str, bytes]:
    files = {f"c{i % 2}/{i:03d}.png": encode(rgb(40 + i % 5, 36, seed=i), "PNG") for i in range(n)}
    files["c0/flat.png"] = encode(solid((128, 128, 128), 30, 30), "PNG")
    return files


def run(tmp_path, name, **overrides):
    raw = tmp_path / "raw"
    if not raw.exists():
        write_raw(raw, photos(23))
    out = tmp_path / name
    preprocess_images(raw, out, cfg(size=(24, 24), **overrides), progress=False)
    manifest = read_parquet(out / "manifest.parquet")
    pixels = gather(out, manifest["shard"].to_numpy(), manifest["shard_offset"].to_numpy())
    return out, manifest, pixels


def sha(pixels: np.ndarray) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(p).tobytes()).hexdigest() for p in pixels]


@pytest.mark.parametrize("store", ["jpeg", "png"])
def test_encoded_store_is_read_back_as_the_pixels_the_manifest_describes(tmp_path, store):
    out, manifest, pixels = run(tmp_path, store, store=store)
    assert is_encoded(out)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-00000.bin", "shard-00000.idx.npy"]
    assert sha(pixels) == list(manifest["pixel_sha256"])  # hash and statistics describe the stored pixels
    _, pixel_manifest, raw_pixels = run(tmp_path, "pixels", store="pixels")
    assert pixels.shape == raw_pixels.shape == (24, 24, 24, 3)
    if store == "png":  # lossless: exactly the raw pixels, and the same manifest columns
        assert np.array_equal(pixels, raw_pixels)
        assert list(manifest["pixel_sha256"]) == list(pixel_manifest["pixel_sha256"])
    else:  # lossy, but close even on random noise, JPEG's worst case
        assert np.abs(pixels.astype(int) - raw_pixels.astype(int)).mean() < 10
    shard = open_shard(out, 0)
    assert shard.shape == (24, 24, 24, 3)
    assert np.array_equal(shard[5], pixels[5]) and np.array_equal(shard[np.array([3, 1])], pixels[[3, 1]])


def test_encoded_store_bytes_do_not_depend_on_the_worker_count(tmp_path):
    one, _, _ = run(tmp_path, "w1", store="jpeg", workers=1)
    two, _, _ = run(tmp_path, "w2", store="jpeg", workers=2)
    for path in sorted(p for p in one.rglob("*") if p.is_file()):
        assert path.read_bytes() == (two / path.relative_to(one)).read_bytes(), path


def test_encoded_shards_split_at_the_size_limit_and_keep_order(tmp_path):
    out, manifest, pixels = run(tmp_path, "small", store="png", shard_max_mb=0.004)
    assert manifest["shard"].max() >= 2
    _, _, whole = run(tmp_path, "whole", store="png")
    assert np.array_equal(pixels, whole)


def test_auto_keeps_small_images_as_pixels_and_encodes_large_ones():
    assert cfg(size=(32, 32)).resolved_store == "pixels"
    assert cfg(size=(64, 64)).resolved_store == "pixels"
    assert cfg(size=(224, 224)).resolved_store == "jpeg"
    assert cfg(size=(224, 224), store="png").resolved_store == "png"


def test_a_truncated_encoded_shard_is_one_line_naming_it(tmp_path):
    out, manifest, _ = run(tmp_path, "cut", store="jpeg")
    shard = out / "shards" / "shard-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(PipelineError, match=r"shard-00000.bin: corrupt or truncated"):
        gather(out, manifest["shard"].to_numpy(), manifest["shard_offset"].to_numpy())
