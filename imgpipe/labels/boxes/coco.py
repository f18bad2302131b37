"""COCO instances JSON: ``images``, ``categories``, ``annotations`` with ``bbox = [x, y, w, h]``.

Accepts one file or a folder of ``instances_*.json``; ``instances_{train,val,test}*.json`` give
the source split. Category ids map to classes by their ``name``, never by position.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from imgpipe.errors import LabelError
from imgpipe.labels.boxes.table import RawBoxes, parse_number

_SPLIT = re.compile(r"instances_(train|val|valid|validation|test)", re.IGNORECASE)
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def coco_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = sorted(path.rglob("instances_*.json"))
    return found or sorted(p for p in path.rglob("*.json") if _is_coco(p))


def _is_coco(path: Path) -> bool:
    try:
        head = path.read_text(errors="replace")[:4096]
    except OSError:
        return False
    # a COCO file is one object; a Label Studio export is a list
    return head.lstrip().startswith("{") and ('"images"' in head or '"annotations"' in head)


def split_of_file(path: Path) -> str:
    found = _SPLIT.search(path.name)
    return _SPLIT_NAMES[found.group(1).lower()] if found else ""


def _load(path: Path, name: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images"), list):
        raise LabelError(f"{name}: not a COCO instances file (expected 'images' and 'annotations' lists)")
    return data


def read_coco_file(path: Path, name: str, out: RawBoxes) -> None:
    data = _load(path, name)
    split = split_of_file(path)
    categories = {}
    for cat in data.get("categories") or []:
        if not isinstance(cat, dict) or "id" not in cat or not str(cat.get("name", "")).strip():
            raise LabelError(f"{name}: category {cat!r} has no id or name")
        categories[cat["id"]] = str(cat["name"])
    images = {}
    for k, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not image.get("file_name"):
            raise LabelError(f"{name}: images[{k}] has no id or file_name")
        images[image["id"]] = image
    boxed = set()
    for k, ann in enumerate(data["annotations"]):
        ann_id = ann.get("id", k) if isinstance(ann, dict) else k
        where = f"{name}: annotation id {ann_id}"
        if not isinstance(ann, dict):
            raise LabelError(f"{where}: not an object")
        image = images.get(ann.get("image_id"))
        if image is None:
            raise LabelError(f"{where}: image_id {ann.get('image_id')!r} is not among the file's images")
        if ann.get("category_id") not in categories:
            raise LabelError(f"{where}: category_id {ann.get('category_id')!r} is not among the file's categories")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise LabelError(f"{where}: malformed coordinate bbox={bbox!r} (expected [x, y, width, height])")
        x, y, w, h = (parse_number(v, where, f"bbox[{i}]") for i, v in enumerate(bbox))
        size = (image.get("width") or 0, image.get("height") or 0)
        boxed.add(image["id"])
        out.add(str(image["file_name"]), where, categories[ann["category_id"]], (x, y, x + w, y + h), size=size,
                split=split, iscrowd=bool(ann.get("iscrowd", 0)))
    for image_id, image in images.items():
        if image_id not in boxed:
            out.empty_images.append((str(image["file_name"]), f"{name}: image id {image_id}", split))


def read_coco(path: Path, name: str) -> RawBoxes:
    path = Path(path)
    files = coco_files(path)
    if not files:
        raise LabelError(f"{name}: no COCO instances_*.json files found")
    out = RawBoxes()
    for file in files:
        read_coco_file(file, f"{name}/{file.relative_to(path).as_posix()}" if path.is_dir() else name, out)
    return out
