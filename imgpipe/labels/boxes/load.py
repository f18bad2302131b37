"""The labels stage for ``labels.task: detection``: box file -> ``boxes.parquet`` (+ labels).

Writes, like the classification import, ``labels.parquet``, ``classes.json``, ``issues.parquet``
and ``annotators.json``, plus ``boxes.parquet`` (``BOX_COLUMNS``). ``labels.parquet`` holds,
with ``labels.detection.crops``, one row per box as a classification item
``<image item_id>#box<box_id>``; without crops, one row per image with boxes, labelled with
the class of its largest box (the image's main object).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe.contracts import (
    ANNOTATORS_FILE,
    BOXES_FILE,
    CLASSES_FILE,
    CROP_COLUMNS,
    CROPS_FILE,
    LABEL_ISSUES_FILE,
    LABELS_FILE,
)
from imgpipe.errors import LabelError
from imgpipe.io import atomic_dir, write_json, write_parquet
from imgpipe.labels.boxes.coco import read_coco
from imgpipe.labels.boxes.detect import BOX_FORMATS, box_location, detect_box_format
from imgpipe.labels.boxes.labelstudio import read_label_studio_boxes, read_label_studio_boxes_min
from imgpipe.labels.boxes.table import RawBoxes, image_size, normalise
from imgpipe.labels.boxes.voc import read_voc
from imgpipe.labels.boxes.yolo import read_yolo
from imgpipe.params.labels import LabelsParams
from imgpipe.rawdata import FILES_DIR, PackReader, RawItem, SourceInfo, list_items

log = logging.getLogger("imgpipe")

READERS = {
    "voc": read_voc,
    "coco": read_coco,
    "yolo": read_yolo,
    "label-studio-json": read_label_studio_boxes,
    "label-studio-json-min": read_label_studio_boxes_min,
}
ISSUE_COLUMNS = ("item_id", "reference", "problem", "detail", "action")
LABEL_COLUMNS = ("item_id", "label", "label_index", "annotators", "agreement", "label_source")


def crop_item_id(item_id: str, box_id: int) -> str:
    return f"{item_id}#box{box_id}"


def read_boxes(path: Path, fmt: str, name: str) -> tuple[RawBoxes, str, str]:
    """``(raw boxes, format, reason)`` of a box file or folder; ``fmt`` may be ``auto``."""
    reason = f"labels.format {fmt}"
    if fmt == "auto":
        fmt, reason = detect_box_format(path, name)
    elif fmt not in BOX_FORMATS:
        raise LabelError(f"labels.format {fmt} is a classification format; labels.task detection reads "
                         f"{', '.join(BOX_FORMATS)} or auto")
    return READERS[fmt](box_location(Path(path), fmt), name), fmt, reason


def _size_reader(raw_dir: Path, items: list[RawItem]):
    by_id = {item.item_id: item for item in items}
    packs: list[PackReader] = []

    def size_of(item_id: str) -> tuple[int, int]:
        item = by_id[item_id]
        if item.pack is None:
            return image_size((raw_dir / FILES_DIR / item.file).read_bytes())
        if not packs:
            packs.append(PackReader(raw_dir))
        return image_size(packs[0].read(item))

    return size_of, packs


def box_table(raw_dir: Path, path: Path, fmt: str, name: str, cfg: LabelsParams,
              items: list[RawItem] | None = None):
    """Read and normalise the boxes of ``path`` against the images of ``raw_dir``."""
    raw_dir = Path(raw_dir)
    items = items if items is not None else list_items(raw_dir)
    raw, fmt, reason = read_boxes(path, fmt, name)
    size_of, packs = _size_reader(raw_dir, items)
    try:
        result = normalise(raw, [i.item_id for i in items], size_of, cfg.classes,
                           on_orphan=cfg.on_orphan_label, on_unknown=cfg.on_unknown_class,
                           item_splits={i.item_id: i.source_split for i in items if i.source_split})
    finally:
        for pack in packs:
            pack.close()
    return result, fmt, reason


def _box_source(raw_dir: Path, cfg: LabelsParams) -> tuple[Path, str]:
    path_text = cfg.path.strip()
    if path_text.lower().startswith(("http://", "https://", "s3://")):
        raise LabelError(f"{path_text}: labels.task detection reads a local box file or folder (VOC and YOLO "
                         "are folders); download it into annotations/ and point labels.path there")
    if path_text:
        return Path(path_text), path_text
    return Path(raw_dir) / FILES_DIR, f"<raw>/{FILES_DIR}"


def label_rows(boxes: pd.DataFrame, classes: list[str], crops: bool, label_source: str) -> pd.DataFrame:
    """labels.parquet rows: one per box (crops), or one per image (its largest box's class)."""
    if crops:
        ids = [crop_item_id(i, b) for i, b in zip(boxes["item_id"], boxes["box_id"], strict=True)]
        frame = pd.DataFrame({"item_id": ids, "label": boxes["label"].to_numpy()})
    else:
        area = (boxes["xmax"] - boxes["xmin"]).clip(lower=0) * (boxes["ymax"] - boxes["ymin"]).clip(lower=0)
        order = boxes.assign(_area=-area).sort_values(["item_id", "_area", "box_id"], kind="stable")
        first = order.drop_duplicates("item_id")
        frame = pd.DataFrame({"item_id": first["item_id"].to_numpy(), "label": first["label"].to_numpy()})
    index = {c: i for i, c in enumerate(classes)}
    frame["label_index"] = np.asarray([index[c] for c in frame["label"]], dtype=np.int64)
    frame["annotators"] = np.int64(1)
    frame["agreement"] = 1.0
    frame["label_source"] = label_source
    return frame.sort_values("item_id", kind="stable").reset_index(drop=True)[list(LABEL_COLUMNS)]


def import_detection(raw_dir: Path, out_dir: Path, cfg: LabelsParams) -> dict:
    """The labels stage's body for ``labels.task: detection``; returns its summary."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    info = SourceInfo.read(raw_dir)
    items = list_items(raw_dir, info)
    path, name = _box_source(raw_dir, cfg)
    result, fmt, reason = box_table(raw_dir, path, cfg.format, name, cfg, items)
    boxes = result.boxes
    log.info("labels: read %s as %s boxes (%s)", name, fmt, reason)
    classes = list(cfg.classes) or sorted(set(boxes["label"]))
    if boxes.empty:
        raise LabelError(f"{name}: no boxes for any of the {len(items)} images")
    labels = label_rows(boxes, classes, cfg.detection.crops, f"{fmt}:{name}")
    issues = pd.DataFrame(result.issues, columns=list(ISSUE_COLUMNS)).astype("str")
    with atomic_dir(out_dir) as tmp:
        write_parquet(labels, tmp / LABELS_FILE)
        write_parquet(boxes, tmp / BOXES_FILE)
        crops = boxes if cfg.detection.crops else boxes.iloc[:0]
        write_parquet(crops[list(CROP_COLUMNS)].reset_index(drop=True), tmp / CROPS_FILE)
        write_json(tmp / CLASSES_FILE, {"classes": classes})
        write_parquet(issues, tmp / LABEL_ISSUES_FILE)
        write_json(tmp / ANNOTATORS_FILE, {"vote": cfg.vote, "annotators": [], "images_with_votes": 0,
                                           "images_with_several_votes": 0, "fleiss_kappa": None,
                                           "krippendorff_alpha": None, "lowest_agreement": []})
    imaged = boxes["item_id"].nunique()
    per_class = boxes["label"].value_counts()
    counts = issues["problem"].value_counts() if len(issues) else pd.Series(dtype=int)
    metrics = {
        "format": fmt, "task": "detection", "images": len(items), "images_with_boxes": int(imaged),
        "images_without_boxes": len(items) - int(imaged), "boxes": len(boxes), "classes": len(classes),
        "labelled": len(labels), "crops": bool(cfg.detection.crops),
        "dropped_boxes": int(len(issues)),
        "problems": {p: {"count": int(counts[p]), "examples": issues.loc[issues["problem"] == p, "detail"].head(5).tolist()}
                     for p in counts.index},
    }
    summary = {
        "format": f"{fmt} boxes ({reason})",
        "label file": name,
        "images": len(items),
        "boxes": f"{len(boxes)} on {imaged} images ({len(items) - imaged} images without boxes)",
        "classes": ", ".join(f"{c} {int(per_class.get(c, 0))}" for c in classes),
        "labelled": f"{len(labels)} {'crop items' if cfg.detection.crops else 'images (class of the largest box)'}",
        "dropped": ", ".join(f"{p} {n}" for p, n in counts.items()) or "none",
        "metrics": metrics,
    }
    return summary
