"""The one normalised box table (``data/labels/boxes.parquet``) and the raw records readers emit.

Coordinates are pixels of the original image, x and y from the top-left corner, max exclusive
(a box covering pixel columns 0..9 has ``xmin=0, xmax=10``), rounded to 0.01 px so the same box
written as VOC, COCO, YOLO or Label Studio gives the same numbers. ``box_id`` is the box's
position among its image's boxes in file order, so the same file always gives the same ids.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from imgpipe.contracts import BOX_COLUMNS
from imgpipe.errors import LabelError
from imgpipe.labels.match import ItemMatcher

COORDS = ("xmin", "ymin", "xmax", "ymax")
FLAGS = ("difficult", "truncated", "iscrowd")
DECIMALS = 2  # 0.01 px: finer than any tool's precision, coarse enough to absorb YOLO's float noise


@dataclass
class RawBoxes:
    """What a reader found, one list entry per box, before images are matched.

    ``reference`` names the image as the file does; ``where`` names the record for messages
    (``"<file>: object 2"``). A size of 0 means the format did not say (read from the image).
    """

    reference: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    xmin: list[float] = field(default_factory=list)
    ymin: list[float] = field(default_factory=list)
    xmax: list[float] = field(default_factory=list)
    ymax: list[float] = field(default_factory=list)
    image_width: list[int] = field(default_factory=list)
    image_height: list[int] = field(default_factory=list)
    annotator: list[str] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    iscrowd: list[bool] = field(default_factory=list)
    source_split: list[str] = field(default_factory=list)
    # images the file lists with no box (VOC file without objects, COCO image without annotations)
    empty_images: list[tuple[str, str, str]] = field(default_factory=list)  # (reference, where, split)
    # image reference -> fractional box (x, y, w, h in 0..1): YOLO, converted once sizes are known
    relative: list[bool] = field(default_factory=list)
    flags_present: set[str] = field(default_factory=set)

    def add(self, reference: str, where: str, label: str, box: Sequence[float], *, size=(0, 0),
            annotator: str = "", split: str = "", relative: bool = False, **flags: bool) -> None:
        self.reference.append(reference)
        self.where.append(where)
        self.label.append(label)
        for name, value in zip(COORDS, box, strict=True):
            getattr(self, name).append(float(value))
        self.image_width.append(int(size[0] or 0))
        self.image_height.append(int(size[1] or 0))
        self.annotator.append(annotator)
        self.source_split.append(split)
        self.relative.append(relative)
        for name in FLAGS:
            getattr(self, name).append(bool(flags.get(name, False)))
        self.flags_present.update(k for k in flags if k in FLAGS)

    def extend(self, other: RawBoxes) -> None:
        for name in self.__dataclass_fields__:
            mine = getattr(self, name)
            if isinstance(mine, list):
                mine.extend(getattr(other, name))
        self.flags_present |= other.flags_present

    def __len__(self) -> int:
        return len(self.reference)


def parse_number(text, where: str, what: str) -> float:
    """A coordinate as a float, or one line naming the record and the bad value."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise LabelError(f"{where}: malformed coordinate {what}={text!r} (expected a number)") from None
    if not np.isfinite(value):
        raise LabelError(f"{where}: malformed coordinate {what}={text!r} (not finite)")
    return value


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from an encoded image's header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (UnidentifiedImageError, OSError):
        return (0, 0)  # preprocess rejects it with its reason; its boxes then have no image


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in BOX_COLUMNS.items()})


@dataclass
class Normalised:
    boxes: pd.DataFrame  # BOX_COLUMNS
    issues: list[tuple[str, str, str, str, str]]  # (item_id, reference, problem, detail, action)
    images_without_boxes: list[str]  # item ids the box file lists with no box
    source_splits: dict[str, str]  # item_id -> split the box format defines


def normalise(raw: RawBoxes, item_ids: Sequence[str], size_of: Callable[[str], tuple[int, int]],
              classes: Sequence[str], on_orphan: str, on_unknown: str,
              item_splits: dict[str, str] | None = None) -> Normalised:
    """Match references to items, fill sizes, convert relative boxes, check classes, number boxes.

    ``on_orphan`` (a box naming no image) and ``on_unknown`` (a class outside ``classes``;
    only when ``classes`` is given) are ``fail`` (one line naming the file and the record) or
    ``drop``/``quarantine`` (the box is left out and listed as an issue). ``item_splits``: the
    split the image's folder gives (``train/...``), used where the box format defines none.
    """
    matcher = ItemMatcher(item_ids)
    cache: dict[str, str] = {}
    issues: list[tuple[str, str, str, str, str]] = []

    def match(reference: str, where: str) -> str:
        if reference not in cache:
            found = matcher.match(reference)
            cache[reference] = found.item_id
            if not found.item_id:
                if on_orphan == "fail":
                    raise LabelError(f"{where}: box refers to image {reference!r}, which {found.detail}")
                issues.append(("", reference, "orphan_label", f"{where}: image {found.detail}", on_orphan))
        return cache[reference]

    keep = np.zeros(len(raw), dtype=bool)
    item_col = [""] * len(raw)
    known = set(classes)
    sizes: dict[str, tuple[int, int]] = {}
    width = np.asarray(raw.image_width, dtype=np.int64)
    height = np.asarray(raw.image_height, dtype=np.int64)
    for i, (reference, where) in enumerate(zip(raw.reference, raw.where, strict=True)):
        item = match(reference, where)
        if not item:
            continue
        if known and raw.label[i] not in known:
            if on_unknown == "fail":
                raise LabelError(f"{where}: class {raw.label[i]!r} is not in labels.classes")
            issues.append((item, reference, "unknown_class", f"{where}: class {raw.label[i]!r}", on_unknown))
            continue
        if width[i] <= 0 or height[i] <= 0:
            if item not in sizes:
                sizes[item] = size_of(item)
            width[i], height[i] = sizes[item]
        item_col[i] = item
        keep[i] = True
    boxes = np.column_stack([np.asarray(getattr(raw, c), dtype=np.float64) for c in COORDS]) \
        if len(raw) else np.zeros((0, 4))
    relative = np.asarray(raw.relative, dtype=bool)
    if relative.any():  # YOLO: centre x, centre y, width, height as shares of the image
        w, h = width[relative].astype(np.float64), height[relative].astype(np.float64)
        cx, cy, bw, bh = boxes[relative].T
        boxes[relative] = np.column_stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
    boxes = np.round(boxes, DECIMALS) + 0.0  # + 0.0: no negative zeros

    frame = pd.DataFrame({
        "item_id": pd.array(item_col, dtype="string"),
        "label": pd.array(raw.label, dtype="string"),
        **{c: boxes[:, k] for k, c in enumerate(COORDS)},
        "image_width": width.astype(np.int32), "image_height": height.astype(np.int32),
        "annotator": pd.array(raw.annotator, dtype="string"),
        **{f: np.asarray(getattr(raw, f), dtype=bool) for f in FLAGS},
        "source_split": pd.array(raw.source_split, dtype="string"),
    })[keep]
    if item_splits:
        unset = frame["source_split"] == ""
        frame.loc[unset, "source_split"] = frame.loc[unset, "item_id"].map(item_splits).fillna("")
    # File order within an image; a stable sort keeps it, so ids never depend on the item order.
    frame = frame.sort_values("item_id", kind="stable")
    frame.insert(1, "box_id", frame.groupby("item_id", sort=False).cumcount().astype(np.int32))
    frame = frame.reset_index(drop=True)[list(BOX_COLUMNS)].astype(BOX_COLUMNS)

    splits = {item: split for item, split in zip(frame["item_id"], frame["source_split"], strict=True) if split}
    without = []
    for reference, where, split in raw.empty_images:
        item = match(reference, where)
        if item:
            without.append(item)
            if split:
                splits.setdefault(item, split)
    boxed = set(frame["item_id"])
    return Normalised(frame, issues, sorted(set(without) - boxed), splits)
