"""Label Studio exports of a RectangleLabels project, JSON (tasks) and JSON-MIN (one record per
annotation). Boxes are percentages of ``original_width``/``original_height``. A rotated box is
refused: its axis-aligned numbers would be silently wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from imgpipe.errors import LabelError
from imgpipe.labels.boxes.table import RawBoxes, parse_number

IMAGE_KEYS = ("image", "img", "file", "url")


def _annotator(who: object) -> str:
    """The annotator as the export names them: a user's email, else their id; "" when none."""
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return "" if who in (None, "") else str(who)


def load_records(path: Path, name: str) -> list:
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabelError(f"{name}: not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise LabelError(f"{name}: not a Label Studio export (expected a list of tasks)")
    return data


def _image_reference(data: dict, where: str) -> str:
    for key in IMAGE_KEYS:
        if isinstance(data.get(key), str) and data[key].strip():
            return data[key]
    texts = [v for v in data.values() if isinstance(v, str) and v.strip()]
    if len(texts) == 1:
        return texts[0]
    raise LabelError(f"{where}: no image reference in the task data (keys: {sorted(data)})")


def _add_region(out: RawBoxes, value: dict, reference: str, where: str, annotator: str,
                original: tuple) -> None:
    labels = value.get("rectanglelabels")
    if not isinstance(labels, list) or len(labels) != 1 or not str(labels[0]).strip():
        raise LabelError(f"{where}: expected one class in rectanglelabels, got {labels!r}")
    rotation = parse_number(value.get("rotation", 0) or 0, where, "rotation")
    if rotation % 360:
        raise LabelError(f"{where}: rotated box ({rotation} degrees) is not supported; "
                         "straighten it in Label Studio or export without rotation")
    x, y, w, h = (parse_number(value.get(k), where, k) for k in ("x", "y", "width", "height"))
    width = original[0] or value.get("original_width") or 0
    height = original[1] or value.get("original_height") or 0
    if not width or not height:
        raise LabelError(f"{where}: no original_width/original_height (needed to turn percentages into pixels)")
    width, height = int(width), int(height)
    out.add(reference, where, str(labels[0]),
            (x / 100 * width, y / 100 * height, (x + w) / 100 * width, (y + h) / 100 * height),
            size=(width, height), annotator=annotator)


def read_label_studio_boxes(path: Path, name: str) -> RawBoxes:
    out = RawBoxes()
    for t, task in enumerate(load_records(path, name)):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelError(f"{name}: task #{t} has no 'data'")
        task_where = f"{name}: task {task.get('id', f'#{t}')}"
        reference = _image_reference(task["data"], task_where)
        regions = 0
        for ann in task.get("annotations") or []:
            if not isinstance(ann, dict) or ann.get("was_cancelled"):
                continue
            who = _annotator(ann.get("completed_by"))
            for r, result in enumerate(ann.get("result") or []):
                if not isinstance(result, dict) or result.get("type") != "rectanglelabels":
                    continue
                where = f"{task_where} annotation {ann.get('id')} region {result.get('id', r)}"
                value = result.get("value")
                if not isinstance(value, dict):
                    raise LabelError(f"{where}: no 'value'")
                _add_region(out, value, reference, where, who,
                            (result.get("original_width"), result.get("original_height")))
                regions += 1
        if not regions:
            out.empty_images.append((reference, task_where, ""))
    return out


def rectangle_key(record: dict) -> str | None:
    for key, value in record.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) and "rectanglelabels" in v for v in value):
            return key
    return None


def read_label_studio_boxes_min(path: Path, name: str) -> RawBoxes:
    out = RawBoxes()
    for t, record in enumerate(load_records(path, name)):
        if not isinstance(record, dict):
            raise LabelError(f"{name}: record #{t} is not an object")
        where = f"{name}: record #{t} (task {record.get('id', '?')})"
        data = {k: v for k, v in record.items() if isinstance(v, str)}
        reference = _image_reference({k: v for k, v in data.items() if k not in (
            "annotator", "created_at", "updated_at")}, where)
        key = rectangle_key(record)
        if key is None:
            out.empty_images.append((reference, where, ""))
            continue
        who = _annotator(record.get("annotator"))
        for r, value in enumerate(record[key]):
            _add_region(out, value, reference, f"{where} region {r}", who, (None, None))
    return out
