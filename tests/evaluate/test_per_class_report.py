"""The per-class report (imgpipe.evaluate.per_class, issue 21) on tiny generated tables: the most
confused class ranks first with the class it is taken for, suspected label errors count per given
label, the card's data side is carried over ("off" stays "off"), and the files are the same bytes
twice."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from imgpipe.evaluate import plots
from imgpipe.evaluate.metrics import per_class_scores
from imgpipe.evaluate.per_class import (
    most_confused,
    per_class_report,
    render_markdown,
    write_per_class_report,
)

CLASSES = ["ant", "bee", "cow"]
# actual (rows) x predicted: cow is mostly taken for bee; ant is perfect; bee loses 1 to ant
CM = np.array([[10, 0, 0],
               [1, 9, 0],
               [0, 6, 4]])
ERRORS = pd.DataFrame({"label": ["cow", "cow", "bee"], "suggested_label": ["bee", "bee", "ant"]})
CARD = pd.DataFrame({"class": CLASSES, "train": ["6", "30", "3"], "val": ["2", "5", "1"], "test": ["2", "5", "1"],
                     "images": ["10", "40", "5"], "share": ["0.181818", "0.727273", "0.090909"],
                     "share_of_limit": ["0.363636", "1.454545", "0.181818"],
                     "over_limit": ["False", "True", "False"], "flagged": ["0", "7", "0"], "dropped": ["1", "0", "0"],
                     "quarantined": ["0", "1", "0"], "exact_duplicate": ["2", "0", "0"],
                     "near_duplicate": ["0", "6", "0"], "label_issue": ["off", "off", "off"]})


def _table() -> pd.DataFrame:
    table = per_class_scores(CM).round(6)
    table.insert(0, "class", CLASSES)
    return table


def test_worst_class_first_with_what_it_is_confused_with():
    target, count = most_confused(CM)
    assert target.tolist() == [-1, 0, 1] and count.tolist() == [0, 1, 6]
    report = per_class_report(_table(), CM, ERRORS, CARD)
    assert report["class"].tolist() == ["cow", "bee", "ant"] and report["rank"].tolist() == [1, 2, 3]
    cow = report.iloc[0]
    assert cow["misclassified"] == 0.6 and cow["confused_with"] == "bee" and cow["confused_count"] == 6
    assert cow["suspected_label_errors"] == 2 and report.iloc[1]["suspected_label_errors"] == 1
    assert report.iloc[2]["confused_with"] == "" and report.iloc[2]["misclassified"] == 0
    # the data side, carried as the card wrote it
    assert report.set_index("class").loc["bee", "near_duplicate"] == "6"
    assert (report["label_issue"] == "off").all()
    md = render_markdown(report, has_card=True)
    first = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert "| cow |" in first and "bee (6, 60%)" in first
    bee = next(line for line in md.splitlines() if line.startswith("| 2 |"))
    assert "near_duplicate 6" in bee and "72.7% (145.5%)" in bee
    assert "Checks that were off: label_issue." in md


def test_without_the_card_the_model_side_stands_alone():
    report = per_class_report(_table(), CM, ERRORS.iloc[:0], None)
    assert "near_duplicate" not in report.columns and report["suspected_label_errors"].sum() == 0
    assert "run `dvc repro card`" in render_markdown(report, has_card=False)


def test_files_are_the_same_bytes_twice(tmp_path):
    (tmp_path / "card").mkdir()
    CARD.to_csv(tmp_path / "card" / "per_class.csv", index=False, lineterminator="\n")
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        summary = write_per_class_report(_table(), CM, ERRORS, tmp_path / "card" / "per_class.csv",
                                         tmp_path / run / "r.csv", tmp_path / run / "r.md", tmp_path / run / "r.png")
    assert summary["most confused classes"].startswith("cow 60.0% (-> bee)")
    for name in ("r.csv", "r.md", "r.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with Image.open(tmp_path / "a" / "r.png") as im:
        assert im.size == plots.SIZES["per_class_report"]
    written = pd.read_csv(tmp_path / "a" / "r.csv", dtype=str, keep_default_na=False)
    assert written["class"].tolist() == ["cow", "bee", "ant"] and written["label_issue"].tolist() == ["off"] * 3
