"""What a preprocess worker gets and gives back, shared by the whole-image and the crop paths
(:mod:`imgpipe.preprocess.pipeline`, :mod:`imgpipe.preprocess.crop_chunks`): the chunk, its
result, the per-item metadata columns, whole-file reads and the encoded store."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from imgpipe.params.preprocess import PreprocessParams
from imgpipe.preprocess.shards import decode_image, encode_image
from imgpipe.rawdata import RawItem

META_COLUMNS = (
    "item_id",
    "source_path",
    "source_index",
    "source_split",
    "orig_width",
    "orig_height",
    "orig_mode",
    "orig_format",
    "orig_bytes",
)
@dataclass(frozen=True)
class Chunk:
    """A run of consecutive items. ``files_dir`` is set for loose files (the worker reads them);
    ``images`` holds the stored pixels for items of an array file."""

    items: tuple[RawItem, ...]
    files_dir: str | None = None
    images: np.ndarray | None = None
    orig_format: str = ""
    crops: tuple | None = None  # per item, its boxes (imgpipe.preprocess.crops): one output row per box
    crop_padding: float = 0.0
    crop_cache: str | None = None  # labels.detection.cache_dir: crops already cut, by content


@dataclass
class ChunkResult:
    items: int
    pixels: np.ndarray  # (n_ok, H, W, C)
    columns: dict[str, list | np.ndarray]  # META_COLUMNS + feature columns, for the n_ok images
    rejects: list[tuple[str, str, str]] = field(default_factory=list)
    encoded: list[bytes] | None = None  # the stored bytes of each image (encoded stores only)


def read_bytes(path: str) -> bytes:
    """A whole file through raw ``os`` calls: at ~1 KB per image, pathlib and buffered file
    objects cost more per file than decoding does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, 1 << 16)
        if len(data) == 1 << 16:
            parts = [data]
            while block := os.read(fd, 1 << 20):
                parts.append(block)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def encode_stored(pixels: np.ndarray, cfg: PreprocessParams) -> list[bytes] | None:
    """The bytes an encoded store keeps for each image, or None for raw pixels. A JPEG is lossy:
    its decoded pixels replace ``pixels`` in place, so the hash and the statistics computed next
    describe exactly what readers will get back."""
    store = cfg.resolved_store
    if store == "pixels":
        return None
    encoded = [encode_image(image, store, cfg.jpeg_quality) for image in pixels]
    if store == "jpeg":
        for i, data in enumerate(encoded):
            pixels[i] = decode_image(data, cfg.channels)
    return encoded
