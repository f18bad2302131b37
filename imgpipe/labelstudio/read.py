"""Label Studio exports of a Choices (image classification) project: JSON, JSON-MIN and CSV/TSV.

JSON is the task list itself: ``{id, data: {image}, annotations: [{id, completed_by, result:
[{type: "choices", from_name, to_name, value: {choices: [...]}}], was_cancelled, ...}],
predictions: [{model_version, score, result}]}``.

JSON-MIN and CSV come from the label-studio-sdk converter: one record per non-cancelled
annotation holding the task's ``data`` fields, ``{from_name: value}`` (a bare string for one
choice, ``{"choices": [...]}`` for several; JSON-encoded in CSV), ``id`` (the task), ``annotator``,
``annotation_id``, ``created_at``, ``updated_at`` and ``lead_time``. The converter drops cancelled
annotations, and writes a task with no annotations at all as one record with no label and a null
``annotation_id``: it is unreviewed (JSON-MIN and CSV carry no predictions, so they cannot say
whether a model pre-annotated it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from imgpipe.errors import LabelError
from imgpipe.labeltable import load_json, read_table, read_text, shown, shown_list, vote, votes_frame
from imgpipe.rawdata import IMAGE_SUFFIXES

# Columns that only Label Studio's CSV/TSV export writes (label-studio-sdk converter, csv2.py).
LS_CSV_MARKERS = {"annotation_id", "annotator"}
# Fields of a Label Studio JSON task that hold annotations.
LS_TASK_MARKERS = {"annotations", "completions", "predictions"}
# Fields the converter adds to each JSON-MIN/CSV record besides the task data and the labels.
RECORD_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history"}
DEFAULT_CHOICES_NAME = "choice"  # the name in Label Studio's image classification template


def _first_seen_keys(records: Iterable[dict]) -> list[str]:
    return list(dict.fromkeys(key for record in records for key in record))


def _looks_like_image(value: object) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    path = value.split("?")[0]
    return PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES or value.startswith(("/data/", "s3://", "gs://"))


def pick_image_key(records: Sequence[dict], preferred: Sequence[str], name: str) -> str:
    """The data field that names the image: a preferred name if present, else the only image-like one."""
    keys = [k for k in _first_seen_keys(records) if k not in RECORD_META]
    for key in preferred:
        if key in keys:
            return key
    image_like = [k for k in keys if any(_looks_like_image(r.get(k)) for r in records)]
    if len(image_like) == 1:
        return image_like[0]
    raise LabelError(
        f"{name}: cannot tell which task field names the image (fields: {shown_list(keys) or 'none'}); "
        "set labels.file_column to it"
    )


def pick_label_key(records: Sequence[dict], image_key: str, preferred: Sequence[str], name: str) -> str | None:
    """The JSON-MIN/CSV field holding the choice (the Choices tag's name); None when no record has one."""
    keys = [
        k for k in _first_seen_keys(records)
        if k not in RECORD_META and k != image_key and not k.endswith("_transcript")
    ]
    for key in [*preferred, DEFAULT_CHOICES_NAME]:
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    if not keys:
        return None
    raise LabelError(
        f"{name}: cannot tell which field holds the class (fields: {shown_list(keys)}); "
        "set labels.label_column to the Choices tag's name"
    )


# What a JSON-encoded choice starts with (an object, or a list of strings or objects).
_JSON_START = re.compile(r'^(\{|\[\s*["{\[\]]|\[\s*$)')


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_choices(value: object, name: str, where: str) -> list[str]:
    """The classes one annotation chose, from any of the shapes the exports use."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "{[":
            try:
                return parse_choices(json.loads(text), name, where)
            except json.JSONDecodeError as exc:
                # CSV exports JSON-encode several choices; a broken encoding is not a class name.
                # A name that merely starts with a bracket ("[unsure]") stays a name.
                if _JSON_START.match(text):
                    raise LabelError(f"{name}: {where}: the choice is broken JSON ({exc.msg} at character "
                                     f"{exc.pos}): {_short(text)}") from None
        return [text]
    if isinstance(value, bool):
        raise LabelError(f"{name}: {where}: a choice must be a class name, got {value!r}")
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, dict):
        if isinstance(value.get("choices"), list):
            return [str(c).strip() for c in value["choices"]]
        raise LabelError(f"{name}: {where}: not a Choices value (keys: {shown_list(value) or 'none'}); "
                         "only Choices (classification) projects can be imported")
    if isinstance(value, list):
        return [c for item in value for c in parse_choices(item, name, where)]
    raise LabelError(f"{name}: {where}: not a Choices value: {value!r}")


def _annotator(completed_by: object, annotation_id: object) -> str:
    """An annotator id as the converter writes it: the email of a user object, else the id."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    if completed_by in (None, ""):
        # Without a user, each annotation counts as its own annotator rather than merging.
        return f"annotation {annotation_id}" if annotation_id not in (None, "") else ""
    return str(completed_by)


def _id_text(value: object) -> str:
    """Ids as the CSV writes them (12, not 12.0), whatever the JSON parser made of them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else shown(value) if str(value) else ""


# ---------------------------------------------------------------------------------------------- JSON


def _tasks(path: Path, name: str) -> list[dict]:
    data = load_json(read_text(path, name), name)
    if not isinstance(data, list):
        raise LabelError(f"{name}: not a Label Studio JSON export (a {type(data).__name__}, expected a list of tasks)")
    if not data:
        raise LabelError(f"{name}: empty Label Studio export (no tasks)")
    for i, task in enumerate(data, 1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelError(f"{name}: task #{i} has no 'data' object: not a Label Studio JSON export")
        for field in ("annotations", "completions", "predictions"):
            if not isinstance(task.get(field, []), list):
                raise LabelError(f"{name}: task #{i}: '{field}' must be a list")
        for field in ("annotations", "completions"):
            for j, ann in enumerate(task.get(field, []), 1):
                # Skipping a malformed annotation would lose a vote without a word.
                if not isinstance(ann, dict):
                    raise LabelError(f"{name}: task #{i}: {field} #{j} is a {type(ann).__name__}, "
                                     "expected an annotation object")
                results = ann.get("result") or []
                if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                    raise LabelError(f"{name}: task #{i}: {field} #{j}: 'result' must be a list of objects")
    return data


def _results(items: Iterable[object]) -> Iterable[dict]:
    for item in items:
        if not isinstance(item, dict):  # some exports list predictions by id only
            continue
        for result in item.get("result") or []:
            if isinstance(result, dict):  # _tasks refused malformed annotation results already
                yield result


def pick_choices_name(tasks: Sequence[dict], preferred: Sequence[str], name: str) -> str | None:
    """The ``from_name`` of the Choices tag the labels come from."""
    results = [r for t in tasks for r in _results([*_annotations(t), *t.get("predictions", [])])]
    names = list(dict.fromkeys(str(r.get("from_name")) for r in results if str(r.get("type")).lower() == "choices"))
    for key in preferred:
        if key in names:
            return key
    if len(names) == 1:
        return names[0]
    if not names:
        other = sorted({str(r.get("type")) for r in results})
        if other:
            raise LabelError(f"{name}: not a Choices (classification) project: result types {shown_list(other)}")
        return None
    raise LabelError(f"{name}: several Choices tags ({shown_list(names)}); set labels.label_column to one of them")


def _annotations(task: dict) -> list[dict]:
    # Label Studio before 1.0 called annotations "completions".
    return list(task.get("annotations", task.get("completions", [])))


def _chosen(items: Iterable[dict], choices_name: str | None, name: str, where: str) -> list[str]:
    out: list[str] = []
    for result in _results(items):
        if str(result.get("type")).lower() == "choices" and result.get("from_name") == choices_name:
            out += parse_choices(result.get("value"), name, where)
    return out


def _prediction_text(task: dict, choices_name: str | None, name: str) -> str:
    predictions = [p for p in task.get("predictions", []) if isinstance(p, dict)]
    if not predictions:
        return "no annotation and no prediction"
    first = predictions[0]
    chosen = _chosen([first], choices_name, name, f"task {task.get('id')}") or ["nothing"]
    model = first.get("model_version") or "a model"
    score = f", score {first['score']}" if isinstance(first.get("score"), int | float) else ""
    return f"only predictions: {model} says {', '.join(chosen)}{score}"


def read_label_studio_json(
    path: Path,
    *,
    image_keys: Sequence[str] = ("image",),
    choices_names: Sequence[str] = (),
    name: str | None = None,
) -> pd.DataFrame:
    """Votes from a Label Studio JSON export: one per choice of each annotation.

    Cancelled (or skipped) annotations come back as ``cancelled`` rows; a task with no usable
    annotation but with predictions, or with no annotations at all, as one ``unreviewed`` row.
    An annotation with an empty result is an empty label.
    """
    name = name or str(path)
    tasks = _tasks(path, name)
    image_key = pick_image_key([t["data"] for t in tasks], image_keys, name)
    choices_name = pick_choices_name(tasks, choices_names, name)
    rows = []
    for i, task in enumerate(tasks, 1):
        reference = task["data"].get(image_key)
        task_id = _id_text(task.get("id", i))
        annotations = _annotations(task)
        usable = 0
        for ann in annotations:
            ann_id = _id_text(ann.get("id"))
            who = _annotator(ann.get("completed_by"), ann_id)
            where = f"task {task_id}, annotation {ann_id}"
            if ann.get("was_cancelled") or ann.get("skipped"):
                rows.append(vote(reference, "", who, "cancelled", i, where))
                continue
            usable += 1
            chosen = _chosen([ann], choices_name, name, where)
            rows += [vote(reference, c, who, "label", i, where) for c in chosen or [""]]
        if not usable and (task.get("predictions") or not annotations):
            where = f"task {task_id} ({_prediction_text(task, choices_name, name)})"
            rows.append(vote(reference, "", "", "unreviewed", i, where))
    return votes_frame(rows)


# ---------------------------------------------------------------------------------- JSON-MIN and CSV


def _record_votes(
    records: Sequence[tuple[int, dict]],
    image_keys: Sequence[str],
    label_keys: Sequence[str],
    name: str,
    position: str,
) -> pd.DataFrame:
    plain = [r for _, r in records]
    image_key = pick_image_key(plain, image_keys, name)
    label_key = pick_label_key(plain, image_key, label_keys, name)
    rows = []
    for row, record in records:
        task_id = _id_text(record.get("id"))
        ann_id = _id_text(record.get("annotation_id"))
        value = record.get(label_key) if label_key else None
        reference = record.get(image_key)
        if not ann_id and parse_choices(value, name, f"{position} {row}") == []:
            where = f"task {task_id} (no annotation in the export)"
            rows.append(vote(reference, "", "", "unreviewed", row, where))
            continue
        where = f"task {task_id}, annotation {ann_id}"
        who = _annotator(record.get("annotator"), ann_id)
        chosen = parse_choices(value, name, where)
        rows += [vote(reference, c, who, "label", row, where) for c in chosen or [""]]
    return votes_frame(rows)


def read_label_studio_json_min(
    path: Path,
    *,
    image_keys: Sequence[str] = ("image",),
    label_keys: Sequence[str] = (),
    name: str | None = None,
) -> pd.DataFrame:
    """Votes from a Label Studio JSON-MIN export (one record per annotation)."""
    name = name or str(path)
    data = load_json(read_text(path, name), name)
    if not isinstance(data, list):
        raise LabelError(f"{name}: not a Label Studio JSON-MIN export (a {type(data).__name__}, expected a list)")
    if not data:
        raise LabelError(f"{name}: empty Label Studio export (no records)")
    for i, record in enumerate(data, 1):
        if not isinstance(record, dict) or not LS_CSV_MARKERS & record.keys():
            raise LabelError(
                f"{name}: record #{i} is not a JSON-MIN record (no 'annotator'/'annotation_id'): "
                "not a Label Studio JSON-MIN export"
            )
    return _record_votes(list(enumerate(data, 1)), image_keys, label_keys, name, "record")


def read_label_studio_csv(
    path: Path,
    *,
    sep: str | None = None,
    image_keys: Sequence[str] = ("image",),
    label_keys: Sequence[str] = (),
    name: str | None = None,
) -> pd.DataFrame:
    """Votes from a Label Studio CSV (or TSV, ``sep="\\t"``; sniffed from the header when None)."""
    name = name or str(path)
    if sep is None:
        first = read_text(path, name).lstrip().splitlines()[0]
        sep = "\t" if first.count("\t") > first.count(",") else ","
    header, rows = read_table(path, sep, name)
    missing = sorted(LS_CSV_MARKERS - set(header))
    if missing:
        raise LabelError(f"{name}: no column {missing[0]!r}: not a Label Studio CSV export (columns: {shown_list(header)})")
    return _record_votes(rows, image_keys, label_keys, name, "line")
