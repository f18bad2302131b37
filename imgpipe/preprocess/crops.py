"""Object crops (``labels.task: detection`` with ``labels.detection.crops``): each box of
``data/labels/boxes.parquet`` becomes a classification item ``<image item_id>#box<box_id>``.

The image is decoded once at full resolution (EXIF orientation applied, converted to
``preprocess.mode``); each box, widened by ``labels.detection.crop_padding`` of its side on every
side and clipped to the image, is cut from that original and only then resized with
``preprocess.resize`` to ``preprocess.size``. A box that leaves nothing after clipping is a
reject (``empty_crop``) naming the crop item, like an undecodable file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageOps

from imgpipe.preprocess import decode

EMPTY_CROP = "empty_crop"


@dataclass(frozen=True)
class CropBox:
    box_id: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    split: str  # the split the box format defines ("" = none)


def crop_item_id(item_id: str, box_id: int) -> str:
    return f"{item_id}#box{box_id}"


def crop_plan(boxes_path: Path | str) -> dict[str, tuple[CropBox, ...]]:
    """image item_id -> its boxes in box_id order, from the labels stage's ``crops.parquet``."""
    from imgpipe.contracts import read_table

    boxes = read_table(boxes_path, "labels")
    plan: dict[str, list[CropBox]] = {}
    for row in boxes.sort_values(["item_id", "box_id"], kind="stable").itertuples(index=False):
        plan.setdefault(row.item_id, []).append(
            CropBox(int(row.box_id), float(row.xmin), float(row.ymin), float(row.xmax), float(row.ymax),
                    str(row.source_split)))
    return {item: tuple(found) for item, found in plan.items()}


def padded_region(box: CropBox, padding: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer pixel region (left, top, right, bottom) covering the padded box inside the image."""
    pad_x = padding * max(box.xmax - box.xmin, 0.0)
    pad_y = padding * max(box.ymax - box.ymin, 0.0)
    left = max(0, math.floor(box.xmin - pad_x))
    top = max(0, math.floor(box.ymin - pad_y))
    right = min(width, math.ceil(box.xmax + pad_x))
    bottom = min(height, math.ceil(box.ymax + pad_y))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def decode_crops(data: bytes, boxes: tuple[CropBox, ...], cfg, padding: float, suffix: str | None = None):
    """``(original, [(box, pixels | Reject)])`` for one encoded image; raises :class:`decode.Reject`
    when the image itself cannot be decoded."""
    im = decode.open_image(data, cfg.max_pixels, suffix)
    mode, fmt = im.mode, im.format or ""
    decode._load(im)
    if decode.exif_orientation(im) != 1 or "exif" in im.info:
        im = ImageOps.exif_transpose(im)
    im = decode.to_mode(im, cfg.mode, cfg.background)
    width, height = im.size
    original = decode.Original(width, height, mode, fmt)
    found = {}
    for box in boxes:
        region = padded_region(box, padding, width, height)
        if region is None:
            continue
        crop = im.crop(region)
        resized = decode.resize(crop, cfg.size, cfg.resize, cfg.background)
        h, w = cfg.size
        found[box.box_id] = (np.frombuffer(resized.tobytes(), dtype=np.uint8).reshape(h, w, cfg.channels), region)
    return original, _with_rejects(boxes, found, original, padding)


class CropCache:
    """Crops already cut, by content: one ``.npy`` per box under ``labels.detection.cache_dir``
    (outside DVC's outputs, like the download cache), keyed by sha256 of the image bytes, the
    box's geometry and every setting that shapes the pixels. When DVC reruns preprocess after a
    box edit, only the changed boxes are cut again, and an image is decoded only if one of its
    boxes is missing. The cached pixels are the ones the cut produced, so the outputs are the
    same bytes with or without the cache. ``None`` directory = off."""

    def __init__(self, directory: str | None, cfg, padding: float) -> None:
        self.directory = Path(directory) if directory else None
        h, w = cfg.size
        self.setting = f"{cfg.mode}|{h}x{w}|{cfg.resize}|{tuple(cfg.background)}|{cfg.max_pixels}|{padding!r}"
        self.hits = self.misses = 0

    def _key(self, digest: str, box: CropBox | None) -> Path:
        import hashlib

        geometry = "image" if box is None else f"{box.xmin!r},{box.ymin!r},{box.xmax!r},{box.ymax!r}"
        key = hashlib.sha256(f"{digest}|{self.setting}|{geometry}".encode()).hexdigest()
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.npy"

    def crops(self, data: bytes, boxes: tuple[CropBox, ...], cfg, padding: float, suffix: str | None = None):
        """Like :func:`decode_crops`, through the cache."""
        if self.directory is None:
            return decode_crops(data, boxes, cfg, padding, suffix)
        import hashlib

        digest = hashlib.sha256(data).hexdigest()
        facts = self._load(self._key(digest, None))
        found = {}
        if facts is not None:
            for box in boxes:
                region = padded_region(box, padding, int(facts[0]), int(facts[1]))
                if region is None:
                    continue
                pixels = self._load(self._key(digest, box))
                if pixels is not None:
                    found[box.box_id] = (pixels, region)
        wanted = [b for b in boxes if padded_region(b, padding, int(facts[0]), int(facts[1])) is not None] \
            if facts is not None else None
        if wanted is not None and all(b.box_id in found for b in wanted):
            self.hits += len(wanted)
            original = decode.Original(int(facts[0]), int(facts[1]), _text(facts[2:6]), _text(facts[6:]))
            return original, _with_rejects(boxes, found, original, padding)
        original, cut = decode_crops(data, boxes, cfg, padding, suffix)
        self.misses += sum(1 for b, result in cut if not isinstance(result, decode.Reject) and b.box_id not in found)
        self.hits += sum(1 for b in found)
        self._save(self._key(digest, None), np.asarray(
            [original.width, original.height, *_codes(original.mode, 4), *_codes(original.format, 8)], dtype=np.int64))
        for box, result in cut:
            if not isinstance(result, decode.Reject):
                self._save(self._key(digest, box), result[0])
        return original, cut

    @staticmethod
    def _load(path: Path):
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent or torn: cut again

    @staticmethod
    def _save(path: Path, array: np.ndarray) -> None:
        import os

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)


def _codes(text: str, n: int) -> list[int]:
    codes = [ord(ch) for ch in text[:n]]
    return codes + [0] * (n - len(codes))


def _text(codes) -> str:
    return "".join(chr(int(c)) for c in codes if int(c))


def _with_rejects(boxes, found, original, padding):
    out = []
    for box in boxes:
        if box.box_id in found:
            out.append((box, found[box.box_id]))
        else:
            out.append((box, decode.Reject(EMPTY_CROP, f"box {box.box_id} ({box.xmin:g}, {box.ymin:g})-"
                                                      f"({box.xmax:g}, {box.ymax:g}) has no pixels inside "
                                                      f"the {original.width}x{original.height} image")))
    return out
