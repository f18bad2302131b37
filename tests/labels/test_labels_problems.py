"""Problems and policies: every problem is counted with examples; ``fail`` stops with a clear message."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imgpipe.errors import LabelError
from imgpipe.labels.importer import ItemMatcher, import_labels, match_votes, resolve_votes
from imgpipe.labeltable import vote, votes_frame
from imgpipe.params.labels import LabelsParams

IMAGES = ["images/a/x.png", "images/b/x.png", *(f"images/p{i}.png" for i in range(1, 7))]
PROBLEM_CSV = """file,label
images/p1.png,cat
images/p1.png,cat
images/p2.png,cat
p2.png,dog
images/p3.png,
images/p4.png,zebra
x.png,cat
nothere.png,dog
images/p5.png, dog
"""


@pytest.fixture
def raw(make_raw, arrays):
    return make_raw({item: arrays.png() for item in IMAGES})


@pytest.fixture
def label_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(PROBLEM_CSV)
    return path


def test_every_problem_is_reported(raw, label_file, tmp_path, cfg):
    summary = import_labels(raw, tmp_path / "out", cfg(path=str(label_file), classes=["cat", "dog"]))
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert labels[["item_id", "label", "label_index"]].values.tolist() == [
        ["images/p1.png", "cat", 0], ["images/p5.png", "dog", 1]]
    issues = pd.read_parquet(tmp_path / "out" / "issues.parquet")
    assert issues[["item_id", "reference", "problem", "action"]].values.tolist() == [
        ["images/a/x.png", "", "missing_label", "quarantine"],
        ["images/b/x.png", "", "missing_label", "quarantine"],
        ["images/p1.png", "images/p1.png", "duplicate_row", "drop"],
        ["images/p2.png", "images/p2.png", "conflict", "quarantine"],
        ["images/p3.png", "images/p3.png", "empty_label", "quarantine"],
        ["images/p4.png", "images/p4.png", "unknown_class", "quarantine"],
        ["images/p6.png", "", "missing_label", "quarantine"],
        ["", "x.png", "orphan_label", "drop"],
        ["", "nothere.png", "orphan_label", "drop"],
    ]
    detail = dict(zip(issues["reference"], issues["detail"], strict=True))
    assert detail["x.png"].startswith("ambiguous: matches 2 images (images/a/x.png, images/b/x.png)")
    assert detail["nothere.png"] == "matches no image (line 9)"
    assert "line 3 repeats line 2" in issues.loc[2, "detail"]
    assert "cat (line 4); dog (line 5)" in issues.loc[3, "detail"]
    assert "'zebra' is not one of the 2 classes" in issues.loc[5, "detail"]

    metrics = summary["metrics"]
    problems = metrics["problems"]
    assert {p: v["count"] for p, v in problems.items()} == {
        "missing_label": 3, "empty_label": 1, "unknown_class": 1, "conflict": 1, "tie": 0,
        "orphan_label": 2, "duplicate_row": 1, "unreviewed": 0}
    assert problems["missing_label"]["examples"][0] == f"images/a/x.png: no label for this image in {label_file}"
    assert metrics["classes_from"] == "params" and metrics["labelled"] == 2
    assert metrics["dropped"] == 3 and metrics["quarantined"] == 6
    assert summary["quarantined"] == "missing_label 3, empty_label 1, unknown_class 1, conflict 1"


@pytest.mark.parametrize(("param", "expected"), [
    ("on_missing_label", ["3 missing label (labels.on_missing_label: fail), e.g. images/a/x.png: no label",
                          "1 empty label (labels.on_missing_label: fail), e.g. images/p3.png"]),
    ("on_unknown_class", ["1 unknown class (labels.on_unknown_class: fail), e.g. images/p4.png: 'zebra'"]),
    ("on_conflict", ["1 conflict (labels.on_conflict: fail), e.g. images/p2.png: the label file gives"]),
    ("on_orphan_label", ["2 orphan label (labels.on_orphan_label: fail), e.g. x.png: ambiguous"]),
])
def test_fail_policy_names_file_problem_count_and_example(param, expected, raw, label_file, tmp_path, cfg):
    with pytest.raises(LabelError) as err:
        import_labels(raw, tmp_path / "out", cfg(path=str(label_file), classes=["cat", "dog"], **{param: "fail"}))
    message = str(err.value)
    assert message.startswith(f"{label_file}: ")
    for part in expected:
        assert part in message
    assert not (tmp_path / "out").exists(), "a failing stage writes nothing"


def test_drop_policies(raw, label_file, tmp_path, cfg):
    import_labels(raw, tmp_path / "out", cfg(path=str(label_file), classes=["cat", "dog"], on_missing_label="drop",
                                   on_unknown_class="drop", on_conflict="drop"))
    issues = pd.read_parquet(tmp_path / "out" / "issues.parquet")
    assert set(issues["action"]) == {"drop"}


def test_inferred_classes_come_from_matched_labels_only(raw, label_file, tmp_path, cfg):
    summary = import_labels(raw, tmp_path / "out", cfg(path=str(label_file)))
    # "dog" from the orphan row alone would not count, but p2/p5 name it; zebra is a class now.
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["classes"] == ["cat", "dog", "zebra"]
    assert summary["metrics"]["classes_from"] == "inferred"


def test_source_classes_freeze_the_source_label_file(make_raw, arrays, tmp_path, cfg):
    """Digits-like: the source defines classes 0..9, so a label "10" in its file is unknown."""
    csv = "file,label\nimages/d0.png,0\nimages/d1.png,10\nimages/d2.png,2\n"
    raw = make_raw({"images/d0.png": arrays.png(), "images/d1.png": arrays.png(), "images/d2.png": arrays.png(),
                    "labels.csv": csv}, classes=[str(d) for d in range(10)], label_file="labels.csv")
    summary = import_labels(raw, tmp_path / "out", cfg())
    issues = pd.read_parquet(tmp_path / "out" / "issues.parquet")
    assert issues[["item_id", "problem"]].values.tolist() == [["images/d1.png", "unknown_class"]]
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert labels["label_index"].tolist() == [0, 2]
    assert summary["metrics"]["classes_from"] == "source"
    assert summary["metrics"]["label_source"] == "csv:labels.csv"


def test_numeric_class_names_sort_as_numbers(make_raw, arrays, tmp_path, cfg):
    files = {f"{k}/i{k}.png": arrays.png() for k in (0, 2, 10, 9)}
    import_labels(make_raw(files), tmp_path / "out", cfg())
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["classes"] == ["0", "2", "9", "10"]


def test_resolve_votes_majority_and_tie():
    """The pure resolver: three annotators settle by majority; two that disagree tie."""
    votes = votes_frame([
        vote("a.png", "cat", "u1", "label", 1, "r1"), vote("a.png", "cat", "u2", "label", 2, "r2"),
        vote("a.png", "dog", "u3", "label", 3, "r3"), vote("b.png", "cat", "u1", "label", 4, "r4"),
        vote("b.png", "dog", "u2", "label", 5, "r5"), vote("c.png", "dog", "u1", "cancelled", 6, "r6"),
    ])
    matched = match_votes(votes, ItemMatcher(["a.png", "b.png", "c.png"]))
    result = resolve_votes(matched, ["a.png", "b.png", "c.png"], ["cat", "dog"], LabelsParams())
    assert result.labels[["item_id", "label", "annotators"]].values.tolist() == [["a.png", "cat", 3]]
    assert result.labels["agreement"].item() == pytest.approx(2 / 3)
    assert result.issues["problem"].tolist() == ["tie", "missing_label"]
    assert result.stats["cancelled_skipped"] == 1 and result.stats["majority_resolved"] == 1


def test_outputs_are_byte_identical_across_runs(raw, label_file, tmp_path, cfg, monkeypatch):
    params = cfg(path=str(label_file), classes=["cat", "dog"])
    import_labels(raw, tmp_path / "one", params)
    monkeypatch.chdir(raw.parent)  # a relative raw dir: nothing machine-specific lands in the outputs
    import_labels(raw.relative_to(raw.parent), tmp_path / "two", params)
    for name in ("labels.parquet", "classes.json", "issues.parquet"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_dvc_metrics_keep_counts_and_examples_but_no_explanatory_text():
    from imgpipe.labels.importer import dvc_metrics

    metrics = {"format": "csv", "format_auto": True, "format_reason": "why", "label_source": "csv:x",
               "classes_from": "params", "labelled": 3,
               "problems": {"tie": {"count": 1, "action": "quarantine", "examples": ["a.png: tie"]}}}
    assert dvc_metrics(metrics) == {"format": "csv", "labelled": 3,
                                    "problems": {"tie": {"count": 1, "examples": ["a.png: tie"]}}}
