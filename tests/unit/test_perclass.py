"""The card's per-class view (imgpipe.perclass, issue 21) on tiny generated tables: a class with
many findings and a class over validate.max_class_share land in the right cells, a check that is
off reads "off" (never 0), a clean set reads zeros, and the CSV and PNG are the same bytes twice.
Also the validate loop's record of which checks ran (check_status)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from imgpipe.perclass import (
    PNG_SIZE,
    cell_text,
    class_view,
    flat_table,
    per_class_png,
    render_markdown,
    summary,
    write_card_files,
)

CLASSES = ["ant", "bee", "cow"]
STATUS = {"exact_duplicate": "on", "leakage": "on", "near_duplicate": "on", "label_issue": "off", "ood": "on",
          "box_empty": "n/a"}


def _tables(findings: list[tuple[str, str, str]], images=(10, 30, 5), limit=0.5):
    """Items ``<class>-<k>``; every image in the dataset (train/val/test in turn); ``findings``:
    (item, check, decision)."""
    items = [(f"{cls}-{k}", cls) for cls, n in zip(CLASSES, images, strict=True) for k in range(n)]
    labels = pd.DataFrame(items, columns=["item_id", "label"])
    dataset = labels.assign(split=[("train", "val", "test")[i % 3] for i in range(len(labels))])
    review = pd.DataFrame(findings, columns=["item_id", "check", "decision"])
    detail = {"check_status": [{"check": k, "status": v} for k, v in STATUS.items()], "max_class_share": limit,
              "per_class": {cls: {"images": n} for cls, n in zip(CLASSES, images, strict=True)}}
    return {"dataset": dataset, "review": review, "labels": labels, "classes": CLASSES, "detail": detail}


PLANTED = ([(f"bee-{k}", "near_duplicate", "flagged") for k in range(6)]
           + [("bee-0", "ood", "quarantined"), ("bee-7", "ood", "flagged")]
           + [("ant-0", "exact_duplicate", "kept"), ("ant-1", "exact_duplicate", "dropped")]
           + [("stray.png", "expectation", "quarantined")])  # no label: counted outside the rows


def test_planted_findings_and_share_land_in_their_cells():
    view = class_view(**_tables(PLANTED))
    rows = {r["class"]: r for r in view["classes"]}
    assert view["columns"] == ["expectation", "exact_duplicate", "leakage", "near_duplicate", "label_issue", "ood"]
    assert rows["bee"]["checks"]["near_duplicate"] == {"found": 6, "kept": 0, "flagged": 6, "dropped": 0,
                                                       "quarantined": 0}
    assert rows["bee"]["checks"]["ood"]["found"] == 2
    # strongest decision per image: bee-0 flagged by one check, quarantined by another -> quarantined
    assert rows["bee"]["decided"] == {"flagged": 6, "dropped": 0, "quarantined": 1}
    assert rows["ant"]["checks"]["exact_duplicate"] == {"found": 2, "kept": 1, "flagged": 0, "dropped": 1,
                                                        "quarantined": 0}
    assert rows["ant"]["decided"] == {"flagged": 0, "dropped": 1, "quarantined": 0}
    assert rows["cow"]["checks"]["near_duplicate"]["found"] == 0
    assert view["findings_outside_classes"] == 1
    # balance: bee is 30 of 45 images = 0.667 > 0.5
    assert [r["over_limit"] for r in view["classes"]] == [False, True, False]
    assert rows["bee"]["share"] == round(30 / 45, 6) and rows["bee"]["share_of_limit"] == round(30 / 45 / 0.5, 6)
    assert rows["ant"]["splits"] == {"train": 4, "val": 3, "test": 3}
    flat = flat_table(view).set_index("class")
    assert flat.loc["bee", "near_duplicate"] == "6" and flat.loc["cow", "ood"] == "0"
    assert bool(flat.loc["bee", "over_limit"]) and flat.loc["bee", "quarantined"] == 1
    md = "\n".join(render_markdown(view))
    bee_line = next(line for line in md.splitlines() if line.startswith("| bee |"))
    assert "**over**" in bee_line and "6 flagged" in bee_line and "2 (1 flagged, 1 quarantined)" in bee_line
    assert "box_empty" not in md.split("|---|")[0] and "Not applicable to this dataset" in md
    assert summary(view) == {"largest class": "bee 66.7% of the images (validate.max_class_share 50.0%) OVER THE LIMIT",
                             "most findings": "bee: 6 flagged, 1 quarantined"}


def test_a_check_that_is_off_reads_off_not_zero():
    view = class_view(**_tables(PLANTED))
    assert all(r["checks"]["label_issue"] == "off" for r in view["classes"])
    assert (flat_table(view)["label_issue"] == "off").all()
    assert cell_text("off") == "off"
    md = "\n".join(render_markdown(view))
    assert all(line.split(" | ")[10] == "off" for line in md.splitlines() if line.startswith(("| ant", "| bee", "| cow")))
    assert "Off: label_issue." in md
    assert "box_empty" not in view["columns"] and view["check_status"]["box_empty"] == "n/a"


def test_a_clean_set_reads_zeros():
    view = class_view(**_tables([], images=(10, 10, 10), limit=1.0))
    for row in view["classes"]:
        assert not row["over_limit"] and row["decided"] == {"flagged": 0, "dropped": 0, "quarantined": 0}
        assert all(cell == "off" or cell["found"] == 0 for cell in row["checks"].values())
    md = "\n".join(render_markdown(view))
    assert "**over**" not in md and "33.3%" in md
    assert view["findings_outside_classes"] == 0
    assert list(summary(view)) == ["largest class"]  # no "most findings" line when nothing was found


def test_csv_and_png_are_the_same_bytes_twice(tmp_path):
    view = class_view(**_tables(PLANTED))
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        write_card_files(view, tmp_path / run, "toy")
    for name in ("per_class.csv", "per_class.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with Image.open(tmp_path / "a" / "per_class.png") as im:
        assert im.size == PNG_SIZE
    # many classes and no check at all still draw at the fixed size
    many = {"max_class_share": None, "columns": [], "check_status": {}, "findings_outside_classes": 0,
            "classes": [{"class": f"c{i}", "share": 0.01, "over_limit": False, "checks": {}} for i in range(100)]}
    per_class_png(many, tmp_path / "many.png")
    with Image.open(tmp_path / "many.png") as im:
        assert im.size == PNG_SIZE


def test_the_loop_records_which_checks_ran():
    """near duplicates switched off inside a check that runs, a check disabled by its params, one
    that needs pixels there are none of, and one with nothing to look at (boxes)."""
    from imgpipe.params.validate import ValidateParams
    from imgpipe.validate.checks.base import REGISTRY, CheckContext
    from imgpipe.validate.checks.loop import run_checks

    rows = pd.DataFrame({"item_id": ["a", "b", "c"], "source_path": ["a", "b", "c"], "label": ["x", "x", "y"],
                         "label_index": np.array([0, 0, 1]), "source_split": ["", "", ""],
                         "pixel_sha256": ["h1", "h1", "h2"]})
    cfg = ValidateParams(near_duplicates={"enabled": False}, ood={"enabled": False})
    checks = [REGISTRY[name]() for name in ("duplicates", "label_issues", "ood", "box_empty")]
    out = run_checks(CheckContext(rows=rows, classes=["x", "y"], cfg=cfg), checks)
    assert out.status == {"exact_duplicate": "on", "leakage": "on", "near_duplicate": "off",
                          "label_issue": "off", "ood": "off", "box_empty": "n/a"}
    assert list(out.status) == ["exact_duplicate", "leakage", "near_duplicate", "label_issue", "ood", "box_empty"]
    assert len(out.findings) == 2  # the exact pair: one kept, one dropped
