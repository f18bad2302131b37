"""The augment stage: per split an index of where each image's pixels are, the train split's
normalisation statistics, and offline augmented copies of the train split when asked for.

The originals are not copied: the index points at their shards in ``data/preprocessed`` (read by
:mod:`imgpipe.storedsplit`). Offline copies are written as shards of augment's own, in the store
preprocess chose (raw pixels, or JPEG/PNG with ``preprocess.jpeg_quality``).

Each augmented copy draws its parameters from ``default_rng([seed, copy])`` for the whole train
split at once, and the pixel work runs in fixed-size batches, so the bytes do not depend on
batching. Geometry (crop, rotation, flips) is one affine warp per image; colour jitter
(brightness, contrast, saturation, hue) is per-image arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgpipe.contracts import HANDWRITING_SOURCES, is_handwriting_source
from imgpipe.params.augment import AugmentParams

BATCH = 512


@dataclass(frozen=True)
class AugmentDraws:
    """Per-image random parameters of one augmented copy."""

    flip_h: np.ndarray  # bool
    flip_v: np.ndarray  # bool
    angle: np.ndarray  # radians
    crop_w: np.ndarray  # crop width as a share of the image width
    crop_h: np.ndarray
    crop_cx: np.ndarray  # crop centre in [-1, 1] coordinates
    crop_cy: np.ndarray
    brightness: np.ndarray  # multiplicative factors
    contrast: np.ndarray
    saturation: np.ndarray
    hue: np.ndarray  # share of a full turn


def draw(cfg: AugmentParams, n: int, copy: int) -> AugmentDraws:
    """Sample every parameter for ``n`` images; disabled operations get identity values."""
    rng = np.random.default_rng([cfg.seed, copy])
    u = rng.random((n, 11))
    ones, zeros = np.ones(n), np.zeros(n)
    if cfg.crop:
        area = cfg.crop_scale_min + (1 - cfg.crop_scale_min) * u[:, 3]
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 4]
        ratio = np.exp(log_ratio)
        crop_w = np.minimum(np.sqrt(area * ratio), 1.0)
        crop_h = np.minimum(np.sqrt(area / ratio), 1.0)
        crop_cx = (1 - crop_w) * (2 * u[:, 5] - 1)
        crop_cy = (1 - crop_h) * (2 * u[:, 6] - 1)
    else:
        crop_w, crop_h, crop_cx, crop_cy = ones, ones, zeros, zeros
    angle = np.deg2rad(cfg.rotate_degrees * (2 * u[:, 2] - 1)) if cfg.rotate else zeros
    jitter = u[:, 7:10]

    def factor(strength: float, col: np.ndarray) -> np.ndarray:
        return 1 + strength * (2 * col - 1) if cfg.color else ones

    return AugmentDraws(
        flip_h=(u[:, 0] < 0.5) & (cfg.hflip is True),  # "auto" unresolved (no source known): off
        flip_v=(u[:, 1] < 0.5) & cfg.vflip,
        angle=angle,
        crop_w=crop_w,
        crop_h=crop_h,
        crop_cx=crop_cx,
        crop_cy=crop_cy,
        brightness=factor(cfg.brightness, jitter[:, 0]),
        contrast=factor(cfg.contrast, jitter[:, 1]),
        saturation=factor(cfg.saturation, jitter[:, 2]),
        hue=cfg.hue * (2 * u[:, 10] - 1) if cfg.color else zeros,
    )


def _affine_theta(d: AugmentDraws, sl: slice, height: int, width: int):
    """Per-image 2x3 matrices mapping output to input coordinates for ``affine_grid``."""
    import torch

    n = sl.stop - sl.start
    cos, sin = np.cos(d.angle[sl]), np.sin(d.angle[sl])
    aspect = width / height
    # Rotate in pixel units (not the squashed [-1, 1] box) so non-square images rotate rigidly.
    rot = np.stack(
        [np.stack([cos, -sin / aspect], -1), np.stack([sin * aspect, cos], -1)], axis=-2
    )
    flip = np.stack([np.where(d.flip_h[sl], -1.0, 1.0), np.where(d.flip_v[sl], -1.0, 1.0)], -1)
    scale = np.stack([d.crop_w[sl], d.crop_h[sl]], -1)
    linear = scale[:, :, None] * rot * flip[:, None, :]
    theta = np.zeros((n, 2, 3))
    theta[:, :, :2] = linear
    theta[:, 0, 2] = d.crop_cx[sl]
    theta[:, 1, 2] = d.crop_cy[sl]
    return torch.from_numpy(theta).to(torch.float32)


def _hue_matrices(hue: np.ndarray):
    """RGB->RGB matrices rotating chroma in YIQ space by ``hue`` turns."""
    import torch

    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = np.linalg.inv(to_yiq)
    angle = 2 * np.pi * hue
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.zeros((hue.size, 3, 3))
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return torch.from_numpy(from_yiq @ rot @ to_yiq).to(torch.float32)


def _luma(x):
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def apply_drawn_transforms(images: np.ndarray, d: AugmentDraws, sl: slice) -> np.ndarray:
    """Augment uint8 ``(B, H, W, C)`` images with the draws ``d[sl]``; returns uint8 of the same shape."""
    import torch
    import torch.nn.functional as F

    n, height, width, channels = images.shape
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    theta = _affine_theta(d, sl, height, width)
    if not torch.all(theta == torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])):
        grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def per_image(values: np.ndarray):
        return torch.from_numpy(values[sl]).to(torch.float32).view(n, 1, 1, 1)

    # Colour maths is written out per channel (no einsum/matmul): elementwise float ops give the
    # same bits whatever torch's thread count, so the augmented arrays are byte-stable.
    x = x * per_image(d.brightness)
    grey = _luma(x) if channels == 3 else x
    mean = grey.mean((2, 3), keepdim=True)
    x = (x - mean) * per_image(d.contrast) + mean
    if channels == 3:
        grey = _luma(x)
        x = (x - grey) * per_image(d.saturation) + grey
        if np.any(d.hue[sl] != 0):
            m = _hue_matrices(d.hue[sl]).view(n, 3, 3, 1, 1, 1)  # m[:, i, j]: (n, 1, 1, 1)
            r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
            x = torch.cat([m[:, i, 0] * r + m[:, i, 1] * g + m[:, i, 2] * b for i in range(3)], dim=1)
    out = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
    return out.contiguous().numpy()


def norm_stats(images: np.ndarray, batch: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std on the 0..1 scale, accumulated in float64 batch by batch."""
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for start in range(0, images.shape[0], batch):
        chunk = np.asarray(images[start : start + batch], dtype=np.float64) / 255.0
        total += chunk.sum((0, 1, 2))
        total_sq += (chunk**2).sum((0, 1, 2))
        count += chunk.shape[0] * chunk.shape[1] * chunk.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    # Rounded so the JSON is stable against last-bit differences in summation.
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def shard_writer(out_dir: Path, store: str, image_shape: tuple[int, int, int], max_bytes: int, quality: int):
    """A shard writer for offline copies in ``store``: ``add(uint8 batch) -> (shard, offset)``."""
    from imgpipe.preprocess.shards import EncodedShardWriter, ShardWriter, encode_image

    if store == "pixels":
        return ShardWriter(out_dir, image_shape, max_bytes)
    writer = EncodedShardWriter(out_dir, max_bytes)

    class _Encoding:
        def add(self, block: np.ndarray):
            return writer.add([encode_image(image, store, quality) for image in block])

        def close(self):
            return writer.close()

    return _Encoding()


def write_copies(images, cfg: AugmentParams, writer, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Write ``cfg.copies`` augmented copies of ``images`` (an array or a lazy
    :class:`imgpipe.storedsplit.StoredImages`) through ``writer``; return the (shard, offset) of
    every copy, copy-major (all of copy 1, then copy 2, ...). Each batch of originals is read once."""
    n = len(images)
    shard = np.empty((cfg.copies, n), dtype=np.int64)
    offset = np.empty((cfg.copies, n), dtype=np.int64)
    draws = [draw(cfg, n, copy) for copy in range(1, cfg.copies + 1)]
    for start in range(0, n, BATCH):
        sl = slice(start, min(start + BATCH, n))
        batch = np.asarray(images[sl])
        for copy, d in enumerate(draws):
            shard[copy, sl], offset[copy, sl] = writer.add(apply_drawn_transforms(batch, d, sl))
        if progress is not None:
            progress.update((sl.stop - sl.start) * cfg.copies)
    return shard.reshape(-1), offset.reshape(-1)


def index_rows(rows, copies: int, copy_shard=None, copy_offset=None):
    """The split's index: ``ITEM_COLUMNS``, ``copy``, ``label_index`` and where the pixels are, for
    the originals (in ``data/preprocessed``) followed by ``copies`` augmented copies (augment's own
    shards at ``copy_shard``/``copy_offset``)."""
    import pandas as pd

    from imgpipe import contracts as c
    from imgpipe.storedsplit import IN_AUGMENTED, IN_PREPROCESSED

    base = rows[list(c.ITEM_COLUMNS)].reset_index(drop=True).astype("string")
    labels = rows[c.LABEL_INDEX].to_numpy(dtype=np.int64)
    n = len(base)
    frames = [base.assign(**{c.COPY: 0, c.LABEL_INDEX: labels, c.PIXELS_IN: IN_PREPROCESSED,
                             c.SHARD: rows[c.SHARD].to_numpy(np.int64),
                             c.SHARD_OFFSET: rows[c.SHARD_OFFSET].to_numpy(np.int64)})]
    for copy in range(1, copies + 1):
        at = slice((copy - 1) * n, copy * n)
        frames.append(base.assign(**{c.COPY: copy, c.LABEL_INDEX: labels, c.PIXELS_IN: IN_AUGMENTED,
                                     c.SHARD: copy_shard[at], c.SHARD_OFFSET: copy_offset[at]}))
    index = pd.concat(frames, ignore_index=True)
    for col in (c.COPY, c.LABEL_INDEX, c.SHARD, c.SHARD_OFFSET):
        index[col] = index[col].astype("int64")
    index[c.PIXELS_IN] = index[c.PIXELS_IN].astype("string")
    return index


def build(dataset, preprocessed_dir: Path, out_dir: Path, cfg: AugmentParams, classes: list[str],
          jpeg_quality: int = 90, shard_max_mb: float = 256.0) -> dict:
    """Write each split's index, ``norm.json``, ``meta.json`` and (``cfg.copies > 0``) the offline
    copies' shards into ``out_dir``; ``jpeg_quality`` and ``shard_max_mb`` are preprocess's, so
    copies are stored like the originals."""
    from tqdm import tqdm

    from imgpipe import contracts
    from imgpipe.io import write_json, write_parquet
    from imgpipe.preprocess.shards import stored_image_shape
    from imgpipe.storedsplit import stored_images

    store = contracts.read_json_output(Path(preprocessed_dir) / contracts.PREPROCESS_INFO_FILE,
                                       "preprocess").get("store", "pixels")
    shape = stored_image_shape(preprocessed_dir)
    counts = {}
    norm = None
    for split in contracts.SPLITS:
        rows = dataset[dataset[contracts.SPLIT] == split]
        if rows.empty:
            raise ValueError(f"the {split} split is empty")
        originals = index_rows(rows, 0)
        images = stored_images(originals, preprocessed_dir, out_dir)
        copies = cfg.copies if split == "train" else 0
        copy_shard = copy_offset = None
        if split == "train":
            mean, std = norm_stats(images)
            norm = {"mean": mean, "std": std}
            if copies:
                writer = shard_writer(out_dir, store, shape, int(shard_max_mb * 2**20), jpeg_quality)
                with tqdm(total=len(images) * copies, desc="augment", unit="img", disable=None) as bar:
                    copy_shard, copy_offset = write_copies(images, cfg, writer, bar)
                writer.close()
        index = index_rows(rows, copies, copy_shard, copy_offset)
        write_parquet(index, out_dir / contracts.split_items_file(split))
        counts[split] = len(index)
        counts[f"{split}_originals"] = len(rows)
    write_json(out_dir / contracts.NORM_FILE, norm)
    # hflip: mirrored images are valid for this data (augment.hflip); train then flips batches and
    # evaluates with flip TTA, reading it here so the train stage needs no augment params.
    # preprocessed: where the originals' shards are (imgpipe.storedsplit.load_split reads them there).
    meta = {"classes": list(classes), "counts": counts, "height": shape[0], "width": shape[1], "channels": shape[2],
            "hflip": cfg.hflip is True, "store": store, "preprocessed": Path(preprocessed_dir).as_posix()}
    write_json(out_dir / contracts.AUGMENTED_META_FILE, meta)
    return meta


# Built-in sources whose images are not mirror-symmetric classes (a mirrored 2 or 7 is no digit).
NO_MIRROR_SOURCES = HANDWRITING_SOURCES


def resolve_hflip(cfg, source: str):
    """``cfg`` with ``hflip: auto`` decided by ``download.source``: on for photos, off for handwriting."""
    if cfg.hflip != "auto":
        return cfg
    return cfg.model_copy(update={"hflip": not is_handwriting_source(source)})
