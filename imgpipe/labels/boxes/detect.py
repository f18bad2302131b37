"""Where the boxes are and in which format (``labels.task: detection``), told from the content."""

from __future__ import annotations

import json
from pathlib import Path

from imgpipe.errors import LabelError
from imgpipe.labels.boxes.coco import coco_files
from imgpipe.labels.boxes.labelstudio import rectangle_key
from imgpipe.labels.boxes.yolo import CLASS_FILES

BOX_FORMATS = ("voc", "coco", "yolo", "label-studio-json", "label-studio-json-min")


def _json_format(path: Path, name: str) -> str:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelError(f"{name}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, list):
        records = [r for r in data if isinstance(r, dict)]
        if records and all(isinstance(r.get("data"), dict) for r in records):
            return "label-studio-json"
        if records and any(rectangle_key(r) for r in records):
            return "label-studio-json-min"
    raise LabelError(f"{name}: JSON but not boxes: expected COCO instances ('images', 'annotations'), "
                     "or a Label Studio export with rectanglelabels")


def detect_box_format(path: Path, name: str) -> tuple[str, str]:
    """``(format, reason)`` for a box file or folder."""
    path = Path(path)
    if not path.exists():
        raise LabelError(f"{name}: not found")
    if path.is_file():
        if path.suffix.lower() == ".xml":
            return "voc", "an XML file"
        if path.suffix.lower() == ".json":
            fmt = _json_format(path, name)
            return fmt, f"a JSON file with {'COCO instances' if fmt == 'coco' else 'Label Studio rectangles'}"
        raise LabelError(f"{name}: cannot tell the box format of this file (expected .xml or .json, or a folder)")
    if any(path.rglob("*.xml")):
        return "voc", "XML files (Pascal VOC)"
    if any(path.rglob("instances_*.json")) or (coco_files(path) and not _yolo_root(path)):
        return "coco", "instances_*.json (COCO)"
    if _yolo_root(path):
        return "yolo", "labels/*.txt with a class-name file (YOLO)"
    jsons = sorted(path.glob("*.json"))
    if len(jsons) == 1:
        return _json_format(jsons[0], f"{name}/{jsons[0].name}"), f"the only JSON file ({jsons[0].name})"
    raise LabelError(f"{name}: no boxes found: expected VOC XML files, COCO instances_*.json, YOLO labels/*.txt "
                     f"with {' / '.join(CLASS_FILES)}, or a Label Studio JSON export")


def _yolo_root(path: Path) -> Path | None:
    """The folder holding YOLO's class-name file (the root or a folder below it)."""
    for name in CLASS_FILES:
        found = sorted(path.rglob(name))
        if found:
            return found[0].parent
    return None


def box_location(path: Path, fmt: str) -> Path:
    """The folder or file a reader gets: a YOLO root may sit below the given folder."""
    if fmt == "yolo" and path.is_dir():
        return _yolo_root(path) or path
    if fmt in ("label-studio-json", "label-studio-json-min") and path.is_dir():
        jsons = sorted(path.glob("*.json"))
        return jsons[0] if len(jsons) == 1 else path
    return path
