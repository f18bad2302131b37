"""Fixtures for the label-import tests: tiny raw dirs and real-shaped label files, made in the test.

The Label Studio builders write tasks with the fields a real Label Studio 1.x JSON export has, and
turn them into JSON-MIN and CSV the way the label-studio-sdk converter does (one record per
non-cancelled annotation, newest first; a task with no annotations as one empty record; a single
choice as a bare string, several as ``{"choices": [...]}``; CSV columns sorted, QUOTE_NONNUMERIC).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import struct
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from imgpipe.io import write_json
from imgpipe.params.labels import LabelsParams
from imgpipe.rawdata import SourceInfo


def png_bytes(value: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_raw(raw: Path, files: dict[str, bytes | str], *, layout: str = "files", classes=None,
              label_file=None) -> Path:
    for rel, content in files.items():
        path = raw / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    (raw / "files").mkdir(parents=True, exist_ok=True)
    info = SourceInfo(source="test", kind="path", layout=layout, classes=classes, label_file=label_file)
    write_json(raw / "source.json", info.to_json())
    return raw


# ------------------------------------------------------------------------------------ array formats


def cifar_batch(labels: list[int], seed: int = 0) -> bytes:
    """A CIFAR-10 python batch as the official files are: bytes keys, uint8 (N, 3072) data."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    obj = {b"batch_label": b"test batch", b"labels": list(labels), b"data": data,
           b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    return pickle.dumps(obj, protocol=2)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


# ------------------------------------------------------------------------------------- Label Studio

STAMP = "2026-11-20T10:{:02d}:00.000000Z"


def ls_annotation(ann_id: int, user: int, choices: list[str], *, task: int, minute: int = 0,
                  cancelled: bool = False, from_name: str = "choice") -> dict:
    result = [{
        "value": {"choices": list(choices)}, "id": f"r{ann_id}x", "from_name": from_name,
        "to_name": "image", "type": "choices", "origin": "manual",
    }] if choices else []
    return {
        "id": ann_id, "completed_by": user, "result": result, "was_cancelled": cancelled,
        "ground_truth": False, "created_at": STAMP.format(minute), "updated_at": STAMP.format(minute),
        "draft_created_at": None, "lead_time": 4.2, "prediction": {}, "result_count": len(result),
        "unique_id": f"00000000-0000-0000-0000-{ann_id:012d}", "import_id": None, "last_action": None,
        "bulk_created": False, "task": task, "project": 1, "updated_by": user, "parent_prediction": None,
        "parent_annotation": None, "last_created_by": None,
    }


def ls_prediction(pred_id: int, choices: list[str], *, task: int, model: str = "resnet18-v3",
                  score: float = 0.87) -> dict:
    return {
        "id": pred_id, "model_version": model, "created_ago": "1 day", "score": score,
        "result": [{"value": {"choices": list(choices)}, "id": f"p{pred_id}x", "from_name": "choice",
                    "to_name": "image", "type": "choices", "origin": "prediction"}],
        "cluster": None, "neighbors": None, "mislabeling": 0.0, "created_at": STAMP.format(0),
        "updated_at": STAMP.format(0), "model": None, "model_run": None, "task": task, "project": 1,
    }


def ls_task(task_id: int, image: str, annotations=(), predictions=()) -> dict:
    annotations, predictions = list(annotations), list(predictions)
    return {
        "id": task_id, "annotations": annotations, "file_upload": image.rsplit("/", 1)[-1], "drafts": [],
        "predictions": predictions, "data": {"image": image}, "meta": {}, "created_at": STAMP.format(0),
        "updated_at": STAMP.format(0), "inner_id": task_id, "total_annotations": len(annotations),
        "cancelled_annotations": sum(a["was_cancelled"] for a in annotations),
        "total_predictions": len(predictions), "comment_count": 0, "unresolved_comment_count": 0,
        "last_comment_updated_at": None, "project": 1, "updated_by": 1, "comment_authors": [],
    }


def _converter_items(tasks: list[dict]):
    """label-studio-sdk Converter.iter_from_json_file + annotation_result_from_task, for Choices."""
    for task in tasks:
        annotations = task["annotations"]
        if not annotations:
            yield {"id": task["id"], "input": task["data"], "output": {}, "completed_by": {},
                   "annotation_id": None, "created_at": None, "updated_at": None, "lead_time": None}
        live = [a for a in annotations if not (a.get("skipped") or a.get("was_cancelled"))]
        for ann in sorted(live, key=lambda a: a["created_at"], reverse=True):
            outputs = defaultdict(list)
            for r in ann["result"]:
                outputs[r["from_name"]].append({**r["value"], "type": "Choices"})
            yield {"id": task["id"], "input": task["data"], "output": dict(outputs),
                   "completed_by": ann["completed_by"], "annotation_id": ann["id"],
                   "created_at": ann["created_at"], "updated_at": ann["updated_at"], "lead_time": ann["lead_time"]}


def _prettify(values: list[dict]):
    out = [v["choices"][0] if len(v["choices"]) == 1 else {"choices": v["choices"]} for v in values]
    return out[0] if len(out) == 1 else out


def _annotator(item: dict, int_id: bool):
    who = item["completed_by"]
    if isinstance(who, dict):
        return who.get("email")
    return who if isinstance(who, int) and int_id else str(who)


def json_min(tasks: list[dict]) -> list[dict]:
    records = []
    for item in _converter_items(tasks):
        record = json.loads(json.dumps(item["input"]))
        record["id"] = item["id"]
        for name, value in item["output"].items():
            record[name] = _prettify(value)
        record["annotator"] = _annotator(item, int_id=True)
        for key in ("annotation_id", "created_at", "updated_at", "lead_time"):
            record[key] = item[key]
        records.append(record)
    return records


def ls_csv(tasks: list[dict], sep: str = ",") -> str:
    keys = {"annotator", "annotation_id", "created_at", "updated_at", "lead_time"}
    rows = []
    for item in _converter_items(tasks):
        record = {"id": item["id"], **item["input"]}
        for name, value in item["output"].items():
            pretty = _prettify(value)
            record[name] = pretty if isinstance(pretty, str) else json.dumps(pretty, ensure_ascii=False)
        record["annotator"] = _annotator(item, int_id=False)
        for key in ("annotation_id", "created_at", "updated_at", "lead_time"):
            record[key] = item[key]
        keys.update(record)
        rows.append(record)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sorted(keys), quoting=csv.QUOTE_NONNUMERIC, delimiter=sep)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def make_raw(tmp_path):
    def make(files: dict[str, bytes | str], name: str = "raw", **kwargs) -> Path:
        return write_raw(tmp_path / name, files, **kwargs)

    return make


@pytest.fixture
def cfg():
    def make(**kwargs) -> LabelsParams:
        return LabelsParams(**kwargs)

    return make


@pytest.fixture
def ls():
    return SimpleNamespace(annotation=ls_annotation, prediction=ls_prediction, task=ls_task,
                           json_min=json_min, csv=ls_csv)


@pytest.fixture
def arrays():
    return SimpleNamespace(cifar_batch=cifar_batch, idx_bytes=idx_bytes, png=png_bytes)
