"""Export round trip: import(export(table)) gives the same box table, in every format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from boxkit import CLASSES, IMAGES, make_raw

from imgpipe.contracts import BOX_COLUMNS
from imgpipe.export import FORMATS
from imgpipe.export.boxes import images_of
from imgpipe.labels.boxes.load import box_table
from imgpipe.params.labels import LabelsParams

READ_AS = {"voc": "voc", "coco": "coco", "yolo": "yolo", "label-studio": "label-studio-json"}


def random_table(seed: int = 0, per_image: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for item in sorted(IMAGES):
        w, h = IMAGES[item]
        for box_id in range(per_image if item != "val/empty.png" else 0):
            x0, x1 = np.sort(np.round(rng.uniform(0, w, 2), 2))
            y0, y1 = np.sort(np.round(rng.uniform(0, h, 2), 2))
            rows.append({"item_id": item, "box_id": box_id, "label": CLASSES[rng.integers(2)], "xmin": x0,
                         "ymin": y0, "xmax": x1, "ymax": y1, "image_width": w, "image_height": h,
                         "annotator": "", "difficult": False, "truncated": False, "iscrowd": False,
                         "source_split": item.split("/")[0]})
    return pd.DataFrame(rows).astype(BOX_COLUMNS)


@pytest.mark.parametrize("fmt", list(READ_AS))
def test_import_of_export_is_the_same_table(tmp_path, fmt):
    raw = make_raw(tmp_path / "raw")
    table = random_table()
    images = pd.DataFrame({"item_id": list(IMAGES), "image_width": [s[0] for s in IMAGES.values()],
                           "image_height": [s[1] for s in IMAGES.values()],
                           "source_split": [i.split("/")[0] for i in IMAGES]})
    out = tmp_path / "export"
    summary = FORMATS[fmt](table, images, CLASSES, out)
    assert summary["boxes"] == len(table)
    for given in (READ_AS[fmt], "auto"):
        cfg = LabelsParams(task="detection", format=given)
        result, detected, _ = box_table(raw, out, given, str(out), cfg)
        assert detected == READ_AS[fmt]
        pd.testing.assert_frame_equal(result.boxes, table)
        if fmt != "label-studio":
            assert result.images_without_boxes == ["val/empty.png"]
    assert images_of(table)["item_id"].tolist() == sorted(set(table["item_id"]))


def test_export_writes_the_validated_boxes(tmp_path, capsys):
    from imgpipe.cli import main
    from imgpipe.io import write_json, write_parquet

    table = random_table(per_image=2)
    table.loc[0, "xmax"] = 99.0  # outside its 40-px image: kept (flagged) and clipped on export
    labels, validated = tmp_path / "data/labels", tmp_path / "data/validated"
    labels.mkdir(parents=True)
    validated.mkdir(parents=True)
    write_parquet(table, labels / "boxes.parquet")
    write_json(labels / "classes.json", {"classes": CLASSES})
    write_parquet(pd.DataFrame({"item_id": ["train/a.png", "train/b.png", "val/empty.png"]}),
                  validated / "dataset.parquet")  # val/c.png quarantined
    write_parquet(pd.DataFrame({"item_id": ["train/b.png", "train/a.png"], "check": ["box_tiny", "box_outside"],
                                "decision": ["dropped", "flagged"], "group_id": ["train/b.png#box1", "train/a.png#box0"]}),
                  validated / "review.parquet")
    (tmp_path / "params.yaml").write_text(
        f"paths:\n  labels: {labels}\n  validated: {validated}\n")
    out = tmp_path / "coco"
    assert main(["export", "--format", "coco", "--out", str(out), "--params", str(tmp_path / "params.yaml")]) == 0
    assert "3 boxes on 3 images as coco" in capsys.readouterr().out
    raw = make_raw(tmp_path / "raw")
    result, _, _ = box_table(raw, out, "auto", str(out), LabelsParams(task="detection"))
    got = result.boxes
    assert list(zip(got["item_id"], got["box_id"], strict=True)) == [
        ("train/a.png", 0), ("train/a.png", 1), ("train/b.png", 0)]
    assert got.loc[0, "xmax"] == 40.0
    assert result.images_without_boxes == ["val/empty.png"]
    assert main(["export", "--format", "coco", "--out", str(out), "--params", str(tmp_path / "params.yaml")]) == 1
