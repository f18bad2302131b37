"""Import: the same boxes as VOC, COCO, YOLO and Label Studio give one table; each bad input one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from boxkit import (
    BOXES,
    CLASSES,
    IMAGES,
    make_raw,
    write_coco,
    write_label_studio,
    write_label_studio_min,
    write_voc,
    write_yolo,
)

from imgpipe.contracts import BOX_COLUMNS, BOXES_FILE, LABELS_FILE
from imgpipe.errors import LabelError
from imgpipe.labels.boxes.load import box_table, import_detection
from imgpipe.params.labels import LabelsParams

WRITERS = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo,
           "label-studio-json": lambda p: write_label_studio(p.with_suffix(".json")),
           "label-studio-json-min": lambda p: write_label_studio_min(p.with_suffix(".json"))}


def expected_table() -> pd.DataFrame:
    rows = []
    for item in sorted(BOXES):
        w, h = IMAGES[item]
        for box_id, (label, x0, y0, x1, y1) in enumerate(BOXES[item]):
            rows.append({"item_id": item, "box_id": box_id, "label": label, "xmin": x0, "ymin": y0, "xmax": x1,
                         "ymax": y1, "image_width": w, "image_height": h, "annotator": "", "difficult": False,
                         "truncated": False, "iscrowd": False, "source_split": item.split("/")[0]})
    return pd.DataFrame(rows).astype(BOX_COLUMNS)


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("given", ["named", "auto"])
def test_every_format_gives_the_same_table(tmp_path, fmt, given):
    raw = make_raw(tmp_path / "raw")
    where = WRITERS[fmt](tmp_path / "boxes")
    cfg = LabelsParams(task="detection", format=fmt if given == "named" else "auto")
    result, detected, _ = box_table(raw, where, cfg.format, str(where), cfg)
    assert detected == fmt
    pd.testing.assert_frame_equal(result.boxes, expected_table())
    if fmt in ("voc", "coco", "yolo"):  # formats that list images without boxes
        assert result.images_without_boxes == ["val/empty.png"]


def test_the_stage_writes_boxes_and_crop_labels(tmp_path):
    raw = make_raw(tmp_path / "raw")
    write_voc(raw / "files" / "voc")  # boxes shipped with the source: labels.path empty
    out = tmp_path / "labels"
    summary = import_detection(raw, out, LabelsParams(task="detection", detection={"crops": True}))
    boxes = pd.read_parquet(out / BOXES_FILE)
    labels = pd.read_parquet(out / LABELS_FILE)
    assert len(boxes) == 6 and summary["metrics"]["boxes"] == 6
    assert labels["item_id"].tolist()[:2] == ["train/a.png#box0", "train/a.png#box1"]
    assert labels.set_index("item_id")["label"]["val/c.png#box2"] == "dog"
    assert json.loads((out / "classes.json").read_text())["classes"] == CLASSES
    # same input, same bytes
    again = tmp_path / "again"
    import_detection(raw, again, LabelsParams(task="detection", detection={"crops": True}))
    assert (again / BOXES_FILE).read_bytes() == (out / BOXES_FILE).read_bytes()


def test_without_crops_each_image_takes_its_largest_box_class(tmp_path):
    raw = make_raw(tmp_path / "raw")
    out = tmp_path / "labels"
    import_detection(raw, out, LabelsParams(task="detection", path=str(write_coco(tmp_path / "coco"))))
    labels = pd.read_parquet(out / LABELS_FILE).set_index("item_id")["label"]
    assert labels.to_dict() == {"train/a.png": "dog", "train/b.png": "dog", "val/c.png": "cat"}


# ----------------------------------------------------------------------------------------- bad input


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def _coco(tmp_path, mutate) -> str:
    root = write_coco(tmp_path / "coco")
    path = root / "instances_train2017.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))
    return str(root)


def _read(tmp_path, where, fmt="auto", **cfg):
    raw = make_raw(tmp_path / "raw")
    params = LabelsParams(task="detection", format=fmt, **cfg)
    return box_table(raw, where, fmt, str(where), params)


def test_coco_annotation_without_image(tmp_path):
    where = _coco(tmp_path, lambda d: d["annotations"][0].update(image_id=999))
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, where)
    assert "instances_train2017.json: annotation id 1: image_id 999" in _one_line(exc)


def test_coco_category_id_out_of_range(tmp_path):
    where = _coco(tmp_path, lambda d: d["annotations"][1].update(category_id=1))
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, where)
    assert "annotation id 2: category_id 1 is not among" in _one_line(exc)


def test_coco_malformed_bbox(tmp_path):
    where = _coco(tmp_path, lambda d: d["annotations"][0].update(bbox=[1, "x", 2, 3]))
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, where)
    assert "annotation id 1: malformed coordinate bbox[1]='x'" in _one_line(exc)


def test_voc_malformed_coordinate(tmp_path):
    root = write_voc(tmp_path / "voc")
    xml = root / "Annotations" / "b.xml"
    xml.write_text(xml.read_text().replace("<xmax>32</xmax>", "<xmax>3two</xmax>"))
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, root)
    assert "Annotations/b.xml: object 1: malformed coordinate xmax='3two'" in _one_line(exc)


def test_voc_box_for_a_missing_image(tmp_path):
    root = write_voc(tmp_path / "voc")
    xml = root / "Annotations" / "b.xml"
    xml.write_text(xml.read_text().replace("<filename>b.png</filename>", "<filename>gone.png</filename>")
                   .replace("<folder>train</folder>", ""))
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, root, on_orphan_label="fail")
    assert "Annotations/b.xml: object 1: box refers to image 'gone.png', which matches no image" in _one_line(exc)
    # with the default policy the box is left out and listed
    result, _, _ = _read(tmp_path / "again", root)
    assert len(result.boxes) == 5
    assert [i[2] for i in result.issues] == ["orphan_label"]


def test_yolo_class_id_out_of_range(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    (root / "labels" / "train" / "b.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, root)
    assert "labels/train/b.txt: line 1: class id 2 is out of range (2 classes in data.yaml)" in _one_line(exc)


def test_yolo_value_outside_0_1(tmp_path):
    root = write_yolo(tmp_path / "yolo")
    (root / "labels" / "train" / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n1 320 240 64 48\n")
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, root)
    assert "labels/train/b.txt: line 2: x_center=320.0 is outside 0-1" in _one_line(exc)


def test_label_studio_rotated_box_is_refused(tmp_path):
    path = write_label_studio(tmp_path / "ls.json")
    tasks = json.loads(path.read_text())
    tasks[1]["annotations"][0]["result"][0]["value"]["rotation"] = 30
    path.write_text(json.dumps(tasks))
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, path)
    assert "ls.json: task 2 annotation 20 region r0: rotated box (30.0 degrees)" in _one_line(exc)


def test_unknown_class_with_frozen_classes(tmp_path):
    root = write_voc(tmp_path / "voc")
    with pytest.raises(LabelError) as exc:
        _read(tmp_path, root, classes=["cat"], on_unknown_class="fail")
    assert "Annotations/a.xml: object 2: class 'dog' is not in labels.classes" in _one_line(exc)
