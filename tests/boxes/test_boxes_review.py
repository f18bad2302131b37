"""Label Studio box review: tasks draw every box; an export of them reads back as the same boxes."""

from __future__ import annotations

import json

import pandas as pd
from boxkit import CLASSES, make_raw
from test_boxes_export import random_table

from imgpipe.export.boxes_review import ANNOTATOR, box_tasks, rectangle_config
from imgpipe.labels.boxes.load import box_table
from imgpipe.params.labels import LabelsParams


def test_tasks_draw_every_box_flagged_first_and_read_back(tmp_path):
    table = random_table(per_image=2)
    review = pd.DataFrame({"item_id": ["val/c.png"], "check": ["box_conflict"], "decision": ["flagged"],
                           "group_id": ["val/c.png#box1"], "suggested_label": ["dog"], "suggested_score": [0.9],
                           "detail": ["IoU 0.950 with box 0 (cat)"]})
    tasks = box_tasks(table, review, image_prefix="/data/local-files/?d=")
    assert [t["data"]["item_id"] for t in tasks] == ["val/c.png", "train/a.png", "train/b.png"]
    assert tasks[0]["predictions"][0]["result"][0]["value"]["rectanglelabels"] == ["dog"]
    assert "box_conflict" in tasks[0]["data"]["findings"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))  # what a Label Studio export of the untouched tasks holds
    raw = make_raw(tmp_path / "raw")
    result, fmt, _ = box_table(raw, path, "auto", str(path), LabelsParams(task="detection"))
    assert fmt == "label-studio-json"
    expected = table.assign(annotator=ANNOTATOR).astype({"annotator": table["annotator"].dtype})
    pd.testing.assert_frame_equal(result.boxes, expected)
    config = rectangle_config(CLASSES)
    assert '<RectangleLabels name="label" toName="image">' in config and '<Label value="dog"/>' in config


def test_write_box_review(tmp_path):
    from imgpipe.export.boxes_review import write_box_review
    from imgpipe.io import write_json, write_parquet

    labels = tmp_path / "labels"
    labels.mkdir()
    write_parquet(random_table(per_image=1), labels / "boxes.parquet")
    write_json(labels / "classes.json", {"classes": CLASSES})
    review = pd.DataFrame(columns=["item_id", "check", "decision", "group_id", "suggested_label",
                                   "suggested_score", "detail"])
    n = write_box_review(labels, review, tmp_path / "tasks.json", tmp_path / "config.xml")
    assert n == 3 and len(json.loads((tmp_path / "tasks.json").read_text())) == 3
    assert "RectangleLabels" in (tmp_path / "config.xml").read_text()
    write_parquet(random_table().iloc[:0], labels / "boxes.parquet")
    assert write_box_review(labels, review, tmp_path / "none.json") is None
