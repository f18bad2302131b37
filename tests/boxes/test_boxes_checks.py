"""Box checks, called directly on a CheckContext built from a tiny hand-made box table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imgpipe.contracts import BOX_COLUMNS
from imgpipe.errors import ValidationFailed
from imgpipe.params.validate import ValidateParams
from imgpipe.validate.checks import registered_checks
from imgpipe.validate.checks.base import REVIEW_COLUMNS, CheckContext
from imgpipe.validate.checks.boxes import pair_iou, same_image_pairs

BOXES = [  # item, label, xmin, ymin, xmax, ymax  (images are 100 x 50)
    ("a.png", "cat", 10, 10, 40, 40),
    ("a.png", "cat", 11, 10, 40, 40),   # duplicate of box 0
    ("a.png", "dog", 10, 11, 40, 40),   # conflict with box 0 (and 1)
    ("b.png", "dog", 5, 5, 5, 20),      # empty: zero width
    ("b.png", "dog", 90, 40, 120, 60),  # outside
    ("b.png", "cat", 0, 0, 1.5, 30),    # tiny (1.5 px) and extreme aspect (20)
    ("c.png", "cat", 3, 3, 3, 3),       # empty; with another empty box: zero union, IoU 0, no duplicate
    ("c.png", "cat", 3, 3, 3, 3),
]


def table() -> pd.DataFrame:
    rows, seen = [], {}
    for item, label, *box in BOXES:
        box_id = seen[item] = seen.get(item, -1) + 1
        rows.append({"item_id": item, "box_id": box_id, "label": label, **dict(zip(("xmin", "ymin", "xmax", "ymax"),
                     map(float, box), strict=True)), "image_width": 100, "image_height": 50, "annotator": "",
                     "difficult": False, "truncated": False, "iscrowd": False, "source_split": ""})
    return pd.DataFrame(rows).astype(BOX_COLUMNS)


def context(items, crops=False, cfg=None, boxes=None) -> CheckContext:
    boxes = table() if boxes is None else boxes
    if crops:
        items = [f"{i}#box{b}" for i, b in zip(boxes["item_id"], boxes["box_id"], strict=True)]
    rows = pd.DataFrame({"item_id": items, "source_path": items})
    return CheckContext(rows=rows, classes=["cat", "dog"], cfg=cfg or ValidateParams(), tables={"boxes": boxes})


def run_all(ctx) -> pd.DataFrame:
    found = [c.run(ctx).findings for c in registered_checks() if c.section == "boxes" and c.name != "box_count"]
    return pd.concat(found, ignore_index=True)


def test_each_box_check_on_crop_items():
    found = run_all(context(None, crops=True))
    assert list(found.columns) == list(REVIEW_COLUMNS)
    got = {(r.check, r.item_id): r.decision for r in found.itertuples()}
    assert got == {
        ("box_empty", "b.png#box0"): "dropped", ("box_empty", "c.png#box0"): "dropped",
        ("box_empty", "c.png#box1"): "dropped",
        ("box_outside", "b.png#box1"): "flagged",
        ("box_tiny", "b.png#box2"): "flagged", ("box_aspect", "b.png#box2"): "flagged",
        ("box_duplicate", "a.png#box1"): "dropped",
        ("box_conflict", "a.png#box0"): "flagged", ("box_conflict", "a.png#box1"): "flagged",
        ("box_conflict", "a.png#box2"): "flagged",
    }
    conflict = found[(found["check"] == "box_conflict") & (found["item_id"] == "a.png#box2")].iloc[0]
    assert conflict["suggested_label"] == "cat"
    outside = found[found["check"] == "box_outside"].iloc[0]
    assert outside["score"] == pytest.approx(1 - (10 * 10) / (30 * 20))  # share of the box outside


def test_on_images_the_finding_names_the_box_and_policies_apply():
    cfg = ValidateParams(boxes={"on_outside": "quarantine", "on_duplicate": "flag"})
    found = run_all(context(["a.png", "b.png", "c.png"], cfg=cfg))
    outside = found[found["check"] == "box_outside"].iloc[0]
    assert (outside["item_id"], outside["group_id"], outside["decision"]) == ("b.png", "b.png#box1", "quarantined")
    assert found.loc[found["check"] == "box_duplicate", "decision"].tolist() == ["flagged"]


def test_box_count_lists_images_without_or_with_too_many_boxes():
    cfg = ValidateParams(boxes={"max_boxes": 2, "min_class_boxes": 0})
    check = next(c for c in registered_checks() if c.name == "box_count")
    result = check.run(context(["a.png", "b.png", "c.png", "none.png"], cfg=cfg))
    assert dict(zip(result.findings["item_id"], result.findings["detail"], strict=True)) == {
        "a.png": "3 boxes (validate.boxes.max_boxes 2)", "b.png": "3 boxes (validate.boxes.max_boxes 2)",
        "none.png": "no boxes"}
    assert result.detail["boxes_per_class"] == {"cat": 5, "dog": 3}


def test_a_class_with_too_few_boxes_fails_through_gx():
    check = next(c for c in registered_checks() if c.name == "box_count")
    with pytest.raises(ValidationFailed, match=r"fewer than 4 boxes .*: dog \(3\)$"):
        check.run(context(["a.png"], cfg=ValidateParams(boxes={"min_class_boxes": 4})))


def test_no_box_table_no_findings():
    ctx = CheckContext(rows=pd.DataFrame({"item_id": ["x"], "source_path": ["x"]}), classes=["cat"],
                       cfg=ValidateParams())
    assert all(c.run(ctx).findings.empty for c in registered_checks() if c.section == "boxes")


def test_pairs_and_zero_union_iou():
    i, j = same_image_pairs(np.array(["a", "a", "a", "b", "c", "c"]))
    assert list(zip(i, j, strict=True)) == [(0, 1), (0, 2), (1, 2), (4, 5)]
    boxes = pd.DataFrame({"xmin": [0.0, 0.0], "ymin": [0.0, 0.0], "xmax": [0.0, 0.0], "ymax": [0.0, 0.0]})
    assert pair_iou(boxes, np.array([0]), np.array([1])).tolist() == [0.0]


def test_crops_of_one_image_share_a_split():
    check = next(c for c in registered_checks() if c.name == "box_count")
    ctx = context(None, crops=True, cfg=ValidateParams(boxes={"min_class_boxes": 0}))
    a, b = check.run(ctx).same_split
    names = ctx.rows["item_id"].to_numpy()
    assert sorted(zip(names[a], names[b], strict=True)) == [
        ("a.png#box0", "a.png#box1"), ("a.png#box1", "a.png#box2"), ("b.png#box0", "b.png#box1"),
        ("b.png#box1", "b.png#box2"), ("c.png#box0", "c.png#box1")]


def test_draw_boxes_on_a_sheet_tile():
    from PIL import Image

    from imgpipe.validate.checks.boxes import draw_boxes

    boxes = table()
    tile = draw_boxes(Image.new("RGB", (50, 25)), boxes[boxes["item_id"] == "a.png"], highlight={0})
    pixels = np.asarray(tile)
    assert tuple(pixels[12, 19]) == (255, 220, 0)  # the right edge (x 40 -> 19 at half scale); box 0 under
    assert tuple(pixels[12, 12]) == (0, 0, 0)  # inside stays untouched
    tile = draw_boxes(Image.new("RGB", (50, 25)), boxes[boxes["item_id"] == "b.png"], highlight={1})
    pixels = np.asarray(tile)
    assert tuple(pixels[20, 45]) == (255, 0, 0)  # the outside box, clipped to the tile, in red
