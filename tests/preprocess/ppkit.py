"""Builders for the preprocess tests: encoded images of every odd kind, and raw dirs."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from imgpipe.io import write_json
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.rawdata import CIFAR10_FILES, IDX_FILES, SourceInfo


def cfg(**overrides) -> PreprocessParams:
    base = {"mode": "RGB", "size": (16, 16), "resize": "stretch", "workers": 1}
    return PreprocessParams(**{**base, **overrides})


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(h: int = 16, w: int = 16, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def rgb(h: int = 16, w: int = 16, seed: int = 0) -> Image.Image:
    return Image.fromarray(noise(h, w, 3, seed))


def solid(colour: tuple[int, int, int], h: int = 16, w: int = 16) -> Image.Image:
    return Image.new("RGB", (w, h), colour)


def jpeg_with_orientation(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, "JPEG", quality=95, exif=exif.tobytes())


def write_raw(raw: Path, files: dict[str, bytes], label_file: str | None = None) -> Path:
    """A ``files`` layout raw dir holding ``files`` (relative path -> bytes)."""
    for rel, data in files.items():
        path = raw / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    info = SourceInfo(source="test", kind="path", layout="files", label_file=label_file)
    write_json(raw / "source.json", info.to_json())
    return raw


def write_cifar10_raw(raw: Path, per_file: int = 5, seed: int = 0) -> tuple[Path, list[np.ndarray]]:
    """A ``cifar10`` layout raw dir with ``per_file`` images in each of the six batch files."""
    rng = np.random.default_rng(seed)
    stored = []
    for rel, _split in CIFAR10_FILES:
        images = rng.integers(0, 256, (per_file, 32, 32, 3), dtype=np.uint8)
        stored.append(images)
        batch = {
            b"data": images.transpose(0, 3, 1, 2).reshape(per_file, -1),
            b"labels": [int(v) for v in rng.integers(0, 10, per_file)],
            b"filenames": [f"img_{i}.png".encode() for i in range(per_file)],
        }
        path = raw / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(batch, protocol=2))
    info = SourceInfo(source="cifar10", kind="official", layout="cifar10")
    write_json(raw / "source.json", info.to_json())
    return raw, stored


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def write_idx_raw(raw: Path, per_file: int = 4, seed: int = 0) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    stored = []
    for image_file, label_file, _split in IDX_FILES:
        images = rng.integers(0, 256, (per_file, 28, 28), dtype=np.uint8)
        stored.append(images)
        (raw / "files").mkdir(parents=True, exist_ok=True)
        (raw / "files" / image_file).write_bytes(_idx(images))
        (raw / "files" / label_file).write_bytes(_idx(rng.integers(0, 10, per_file).astype(np.uint8)))
    info = SourceInfo(source="mnist", kind="official", layout="idx")
    write_json(raw / "source.json", info.to_json())
    return raw, stored
