"""The card's box section: counts per class and split, findings per check, two PNGs."""

from __future__ import annotations

import pandas as pd
from boxkit import CLASSES
from test_boxes_export import random_table

from imgpipe.boxcard import PER_CLASS_PNG, SIZES_PNG, box_section
from imgpipe.contracts import BOX_COLUMNS
from imgpipe.io import write_parquet


def test_box_section(tmp_path):
    labels, validated, out = tmp_path / "labels", tmp_path / "validated", tmp_path / "card"
    for d in (labels, validated, out):
        d.mkdir()
    table = random_table(per_image=2)
    write_parquet(table, labels / "boxes.parquet")
    crops = table["item_id"] + "#box" + table["box_id"].astype(str)
    write_parquet(pd.DataFrame({"item_id": crops[:-1], "split": ["train"] * 4 + ["val"]}), validated / "dataset.parquet")
    write_parquet(pd.DataFrame({"item_id": [crops.iloc[-1]], "check": ["box_tiny"], "decision": ["dropped"]}),
                  validated / "review.parquet")
    section, markdown = box_section(labels, validated, out, CLASSES)
    assert section["boxes"] == 6 and section["kept"] == 5
    assert sum(section["per_split_and_class"]["train"].values()) == 4
    assert section["findings"]["box_tiny"] == {"dropped": 1}
    assert "## Boxes" in markdown and "| box_tiny | dropped 1 |" in markdown
    first = (out / SIZES_PNG).read_bytes()
    assert first[:4] == b"\x89PNG" and (out / PER_CLASS_PNG).exists()
    box_section(labels, validated, out, CLASSES)
    assert (out / SIZES_PNG).read_bytes() == first  # same data, same bytes

    write_parquet(table.iloc[:0].astype(BOX_COLUMNS), labels / "boxes.parquet")  # classification: no section
    assert box_section(labels, validated, out, CLASSES) == ({}, "")
