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
