"""Tiny generated detection data, and the same boxes written by hand in each tool's format.

Images live under ``train/`` and ``val/`` (the folder split), with different sizes, so a
reader that mixes up width and height or forgets a split shows up. The hand-written files follow
the formats' own conventions (VOC 1-based inclusive, COCO [x, y, w, h], YOLO centre shares,
Label Studio percentages), independent of the project's writers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from imgpipe.io import write_json
from imgpipe.rawdata import SourceInfo

# item_id -> (width, height)
IMAGES = {"train/a.png": (40, 30), "train/b.png": (64, 48), "val/c.png": (50, 50), "val/empty.png": (20, 20)}
# item_id -> boxes in table convention (0-based, max exclusive), file order
BOXES = {
    "train/a.png": [("cat", 2, 3, 20, 25), ("dog", 10.5, 0, 40, 30)],
    "train/b.png": [("dog", 0, 0, 32, 24)],
    "val/c.png": [("cat", 5, 5, 15, 45), ("cat", 30, 10, 49, 20), ("dog", 1, 1, 2, 2)],
}
CLASSES = ["cat", "dog"]


def png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_raw(raw: Path, images: dict = IMAGES, extra: dict[str, str] | None = None) -> Path:
    for i, (item, (w, h)) in enumerate(images.items()):
        path = raw / "files" / item
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png(w, h, i))
    for rel, text in (extra or {}).items():
        path = raw / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (raw / "files").mkdir(parents=True, exist_ok=True)
    write_json(raw / "source.json", SourceInfo(source="test", kind="path", layout="files").to_json())
    return raw


def write_voc(root: Path) -> Path:
    for item, (w, h) in IMAGES.items():
        objects = "".join(
            f"<object><name>{label}</name><truncated>0</truncated><difficult>0</difficult><bndbox>"
            f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for label, x0, y0, x1, y1 in BOXES.get(item, []))
        folder, name = item.split("/")
        xml = (f"<annotation><folder>{folder}</folder><filename>{name}</filename>"
               f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(xml)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("c\nempty\n")
    return root


def write_coco(root: Path) -> Path:
    root.mkdir(parents=True)
    categories = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]  # ids unrelated to class order
    by_name = {c["name"]: c["id"] for c in categories}
    for split in ("train", "val"):
        images, annotations = [], []
        for image_id, (item, (w, h)) in enumerate(IMAGES.items(), 100):
            if not item.startswith(split):
                continue
            images.append({"id": image_id, "file_name": item, "width": w, "height": h})
            for label, x0, y0, x1, y1 in BOXES.get(item, []):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": by_name[label],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0, "area": 1})
        (root / f"instances_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def write_yolo(root: Path) -> Path:
    (root).mkdir(parents=True)
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    for item, (w, h) in IMAGES.items():
        lines = "".join(
            f"{CLASSES.index(label)} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n"
            for label, x0, y0, x1, y1 in BOXES.get(item, []))
        split, name = item.split("/")
        path = root / "labels" / split / f"{Path(name).stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines)
    return root


def _ls_region(label, x0, y0, x1, y1, w, h, **extra) -> dict:
    return {"x": x0 / w * 100, "y": y0 / h * 100, "width": (x1 - x0) / w * 100, "height": (y1 - y0) / h * 100,
            "rotation": 0, "rectanglelabels": [label], **extra}


def write_label_studio(path: Path) -> Path:
    tasks = []
    for task_id, (item, (w, h)) in enumerate(IMAGES.items(), 1):
        result = [{"id": f"r{k}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                   "original_width": w, "original_height": h, "image_rotation": 0,
                   "value": _ls_region(*box, w, h)} for k, box in enumerate(BOXES.get(item, []))]
        tasks.append({"id": task_id, "data": {"image": f"/data/local-files/?d={item}"},
                      "annotations": [{"id": task_id * 10, "completed_by": None, "was_cancelled": False,
                                       "result": result}], "predictions": []})
    path.write_text(json.dumps(tasks))
    return path


def write_label_studio_min(path: Path) -> Path:
    records = []
    for task_id, (item, (w, h)) in enumerate(IMAGES.items(), 1):
        record = {"image": f"/data/upload/1/{item.split('/')[1]}", "id": task_id, "annotation_id": task_id * 10,
                  "annotator": None, "created_at": "2026-01-01T00:00:00Z", "lead_time": 1.0}
        regions = [_ls_region(*box, w, h, original_width=w, original_height=h) for box in BOXES.get(item, [])]
        if regions:
            record["label"] = regions
        records.append(record)
    path.write_text(json.dumps(records))
    return path
