"""Per-image features for the manifest, computed for a whole chunk at once in numpy.

Input is always a stack of final model pixels, uint8 ``(N, H, W, C)``. Statistics are exact
(integer histograms, float64 sums of integers), so they cannot depend on summation order. The
hashes use small float matmuls whose results are rounded before comparison, so they neither
depend on float noise nor on how BLAS splits the work. Chunks are the same whatever the worker
count, so the bytes are too.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

PERCENTILES = (5, 50, 95)
HASH_SIZE = 8  # 8x8 = 64 bits, 16 hex chars
PHASH_SIZE = 32  # phash takes the DCT of a 32x32 grey thumbnail


def grey(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` luma, bit-identical to Pillow's ``convert("L")`` (ITU-R 601)."""
    if pixels.shape[-1] == 1:
        return pixels[..., 0]
    rgb = pixels.astype(np.uint32)
    luma = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return (luma >> 16).astype(np.uint8)


def image_channel_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-channel mean and (population) std on the 0..255 scale, each ``(N, C)``.

    The sums are of integers far below 2**53, so float64 holds them exactly and the result
    cannot depend on summation order.
    """
    n, h, w, c = pixels.shape
    # Channel-major and contiguous, so each sum runs over one unbroken row.
    planes = np.ascontiguousarray(pixels.reshape(n, h * w, c).transpose(0, 2, 1))
    count = h * w
    # Integer sums (squares fit uint16): the same exact values as float64 sums, with no float64
    # copy of the pixels (8 bytes per subpixel: 4x faster at 224x224).
    sums = planes.sum(axis=2, dtype=np.int64).astype(np.float64)
    squares = np.square(planes, dtype=np.uint16).sum(axis=2, dtype=np.int64).astype(np.float64)
    mean = sums / count
    var = np.maximum(squares / count - mean * mean, 0.0)
    return mean, np.sqrt(var)


def grey_histograms(grey_images: np.ndarray) -> np.ndarray:
    """256-bin grey-level histogram per image, ``(N, 256)`` int64."""
    n = grey_images.shape[0]
    offsets = (np.arange(n, dtype=np.int64) * 256)[:, None]
    codes = grey_images.reshape(n, -1).astype(np.int64) + offsets
    return np.bincount(codes.ravel(), minlength=n * 256).reshape(n, 256)


def entropy(histograms: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each grey-level histogram (0 for a flat image, 8 at most)."""
    p = histograms / histograms.sum(axis=1, keepdims=True)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1) + 0.0  # + 0.0 turns -0.0 into 0.0


def percentiles_from_histograms(histograms: np.ndarray, qs: tuple[float, ...] = PERCENTILES) -> np.ndarray:
    """Grey-level percentiles ``(N, len(qs))``, equal to ``np.percentile(..., method="linear")``
    on the pixels, read off the cumulative histogram instead of sorting every image."""
    cumulative = np.cumsum(histograms, axis=1)
    count = cumulative[:, -1:]
    out = np.empty((histograms.shape[0], len(qs)), dtype=np.float64)
    for j, q in enumerate(qs):
        rank = (q / 100.0) * (count[:, 0] - 1)
        low = np.floor(rank)
        high = np.ceil(rank)
        # The k-th smallest value (0-based) is the number of levels whose cumulative count <= k.
        v_low = (cumulative <= low[:, None]).sum(axis=1)
        v_high = (cumulative <= high[:, None]).sum(axis=1)
        out[:, j] = v_low + (rank - low) * (v_high - v_low)
    return out


def laplacian_variance(grey_images: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian per image: low means blurry (or flat).

    Exact int64 sums; images smaller than 3x3 have no interior and score 0.
    """
    n, h, w = grey_images.shape
    if h < 3 or w < 3:
        return np.zeros(n, dtype=np.float64)
    g = grey_images.astype(np.int32)
    lap = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4 * g[:, 1:-1, 1:-1]
    flat = lap.reshape(n, -1).astype(np.int64)
    count = flat.shape[1]
    mean = flat.sum(axis=1) / count
    return np.maximum((flat * flat).sum(axis=1) / count - mean * mean, 0.0)


@lru_cache(maxsize=32)
def area_matrix(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` box-filter weights: row i averages the source span that output cell i covers."""
    edges = np.arange(dst + 1, dtype=np.float64) * (src / dst)
    left = np.arange(src, dtype=np.float64)
    overlap = np.clip(
        np.minimum(edges[1:, None], left[None, :] + 1) - np.maximum(edges[:-1, None], left[None, :]), 0, None
    )
    weights = overlap / overlap.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=4)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(n, n)``: ``D @ x`` is the DCT of ``x``."""
    k = np.arange(n, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    d.setflags(write=False)
    return d


def _bits_to_hex(bits: np.ndarray) -> list[str]:
    packed = np.packbits(bits.reshape(bits.shape[0], -1).astype(np.uint8), axis=1)
    return [row.tobytes().hex() for row in packed]


def _project(grey_images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ image @ cols.T`` for every image, rounded to 1e-6.

    The rounding is what keeps hash bits stable: a flat image's AC coefficients are ~1e-13 of
    float noise that would otherwise decide its bits, and any change in BLAS summation order
    would flip them.
    """
    g = grey_images.astype(np.float64)
    return np.round(rows @ (g @ cols.T), 6) + 0.0


def phash(grey_images: np.ndarray) -> list[str]:
    """Perceptual hash: box-resize to 32x32, 2-D DCT, keep the 8x8 lowest frequencies, one bit
    per coefficient above their median. Resize and DCT are folded into one matrix per axis."""
    _, h, w = grey_images.shape
    low = dct_matrix(PHASH_SIZE)[:HASH_SIZE]
    coeffs = _project(grey_images, low @ area_matrix(h, PHASH_SIZE), low @ area_matrix(w, PHASH_SIZE))
    coeffs = coeffs.reshape(len(coeffs), -1)
    median = np.median(coeffs, axis=1, keepdims=True)
    return _bits_to_hex(coeffs > median)


def dhash(grey_images: np.ndarray) -> list[str]:
    """Difference hash: box-resize to 9 wide x 8 high; one bit per left-to-right brightening."""
    _, h, w = grey_images.shape
    small = _project(grey_images, area_matrix(h, HASH_SIZE), area_matrix(w, HASH_SIZE + 1))
    return _bits_to_hex(small[:, :, 1:] > small[:, :, :-1])


def pixel_sha256(pixels: np.ndarray) -> list[str]:
    """Hex sha256 of each image's final pixel bytes (HWC, C-order)."""
    return [hashlib.sha256(np.ascontiguousarray(image).data).hexdigest() for image in pixels]


def compute(pixels: np.ndarray) -> dict[str, list | np.ndarray]:
    """Every manifest feature column for a stack of model pixels ``(N, H, W, C)``."""
    g = grey(pixels)
    hist = grey_histograms(g)
    mean, std = image_channel_stats(pixels)
    levels = percentiles_from_histograms(hist)
    columns: dict[str, list | np.ndarray] = {
        "pixel_sha256": pixel_sha256(pixels),
        "phash": phash(g),
        "dhash": dhash(g),
    }
    for c in range(pixels.shape[-1]):
        columns[f"mean_c{c}"] = mean[:, c]
    for c in range(pixels.shape[-1]):
        columns[f"std_c{c}"] = std[:, c]
    for j, q in enumerate(PERCENTILES):
        columns[f"brightness_p{q:02d}"] = levels[:, j]
    columns["entropy"] = entropy(hist)
    columns["blur"] = laplacian_variance(g)
    return columns
