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
    out = []
    for box in boxes:
        region = padded_region(box, padding, width, height)
        if region is None:
            out.append((box, decode.Reject(EMPTY_CROP, f"box {box.box_id} ({box.xmin:g}, {box.ymin:g})-"
                                                      f"({box.xmax:g}, {box.ymax:g}) has no pixels inside "
                                                      f"the {width}x{height} image")))
            continue
        crop = im.crop(region)
        resized = decode.resize(crop, cfg.size, cfg.resize, cfg.background)
        h, w = cfg.size
        pixels = np.frombuffer(resized.tobytes(), dtype=np.uint8).reshape(h, w, cfg.channels)
        out.append((box, (pixels, region)))
    return original, out
