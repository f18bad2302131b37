"""Manifest features against straightforward per-image references."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from ppkit import noise

from imgpipe.preprocess import features


def stack(*images: np.ndarray) -> np.ndarray:
    return np.stack([im if im.ndim == 3 else im[:, :, None] for im in images])


def test_grey_matches_pillow_convert_l():
    images = stack(noise(16, 16, seed=1), noise(16, 16, seed=2))
    for image, g in zip(images, features.grey(images), strict=True):
        np.testing.assert_array_equal(g, np.asarray(Image.fromarray(image).convert("L")))


def test_channel_stats_match_numpy():
    images = stack(noise(16, 12, seed=1), noise(16, 12, seed=2))
    mean, std = features.image_channel_stats(images)
    np.testing.assert_allclose(mean, images.reshape(2, -1, 3).mean(axis=1), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, images.reshape(2, -1, 3).std(axis=1), rtol=0, atol=1e-9)


def test_percentiles_equal_numpy_linear_percentiles():
    greys = np.stack([noise(15, 11, 1, seed=s) for s in range(5)])
    got = features.percentiles_from_histograms(features.grey_histograms(greys))
    want = np.percentile(greys.reshape(5, -1), features.PERCENTILES, axis=1).T
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_entropy_in_bits():
    flat = np.full((8, 8), 7, np.uint8)
    halves = np.zeros((8, 8), np.uint8)
    halves[:, 4:] = 255
    all_levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    hist = features.grey_histograms(np.stack([flat, halves]))
    np.testing.assert_allclose(features.entropy(hist), [0.0, 1.0])
    assert features.entropy(features.grey_histograms(all_levels[None]))[0] == pytest.approx(8.0)


def test_blur_is_low_for_flat_and_smooth_images_and_high_for_edges():
    flat = np.full((16, 16), 100, np.uint8)
    ramp = np.tile(np.arange(0, 160, 10, dtype=np.uint8), (16, 1))  # linear: Laplacian 0
    checker = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)
    blur = features.laplacian_variance(np.stack([flat, ramp, checker]))
    assert blur[0] == 0 and blur[1] == 0 and blur[2] > 1e5
    assert features.laplacian_variance(np.zeros((1, 2, 2), np.uint8))[0] == 0


def test_hashes_are_16_hex_chars_and_robust_to_small_changes():
    base = np.kron(noise(4, 4, 1, seed=5), np.ones((8, 8), np.uint8))
    brighter = np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)
    other = np.kron(noise(4, 4, 1, seed=6), np.ones((8, 8), np.uint8))
    greys = np.stack([base, brighter, other])
    for fn in (features.phash, features.dhash):
        hashes = fn(greys)
        assert all(len(h) == 16 and int(h, 16) >= 0 for h in hashes)
        distance = [bin(int(hashes[0], 16) ^ int(h, 16)).count("1") for h in hashes]
        assert distance[1] <= 2 < distance[2]


def test_flat_images_hash_without_float_noise():
    # A flat image's AC coefficients are float noise around 0; rounding makes them exactly 0, so
    # only the DC bit (set unless black) can be on.
    greys = np.stack([np.full((32, 32), v, np.uint8) for v in (0, 90, 255)])
    assert features.dhash(greys) == ["0" * 16] * 3
    assert features.phash(greys) == ["0" * 16, "8" + "0" * 15, "8" + "0" * 15]


def test_hashes_work_for_any_size():
    greys = np.stack([noise(50, 70, 1, seed=s) for s in range(2)])
    assert len(features.phash(greys)) == 2 and len(features.dhash(greys)) == 2
    weights = features.area_matrix(70, 32)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_compute_returns_every_manifest_feature_column():
    images = stack(noise(16, 16, seed=1), noise(16, 16, seed=2))
    columns = features.compute(images)
    assert list(columns) == [
        "pixel_sha256", "phash", "dhash", "mean_c0", "mean_c1", "mean_c2", "std_c0", "std_c1", "std_c2",
        "brightness_p05", "brightness_p50", "brightness_p95", "entropy", "blur",
    ]
    import hashlib

    assert columns["pixel_sha256"][1] == hashlib.sha256(images[1].tobytes()).hexdigest()
    grey_columns = features.compute(stack(noise(16, 16, 1)))
    assert "mean_c0" in grey_columns and "mean_c1" not in grey_columns
