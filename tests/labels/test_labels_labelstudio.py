"""Label Studio exports of one Choices project with several annotators, in JSON, JSON-MIN and CSV."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imgpipe.errors import LabelError
from imgpipe.labels.importer import import_labels, read_label_studio_json

IMAGES = [f"images/img_{i}.png" for i in range(9)]


def upload(i: int, hexid: str = "3f2a1b0c") -> str:
    return f"/data/upload/7/{hexid}-img_{i}.png"


def project(ls) -> list[dict]:
    """A real-shaped export: every case the stage must handle, one task each."""
    a, t, p = ls.annotation, ls.task, ls.prediction
    return [
        # 3 annotators, 2 agree: majority, agreement 2/3.
        t(1, upload(0), [a(11, 1, ["cat"], task=1, minute=1), a(12, 2, ["cat"], task=1, minute=2),
                         a(13, 3, ["dog"], task=1, minute=3)]),
        # 2 agree, a third cancelled (skipped) the task: the cancelled one is not a vote.
        t(2, upload(1), [a(21, 1, ["dog"], task=2), a(22, 2, ["dog"], task=2, minute=4),
                         a(23, 3, [], task=2, cancelled=True)]),
        # A tie: flagged, never guessed.
        t(3, upload(2), [a(31, 1, ["cat"], task=3), a(32, 2, ["dog"], task=3, minute=5)]),
        # Only a model's pre-annotation: unreviewed, never ground truth.
        t(4, upload(3), [], [p(41, ["cat"], task=4)]),
        # One annotator, stored in S3 under the same relative path.
        t(5, "s3://bucket/dataset/images/img_4.png", [a(51, 2, ["bird"], task=5)]),
        # An annotation submitted with nothing chosen: an empty label.
        t(6, upload(6), [a(61, 1, [], task=6)]),
        # One annotator choosing two classes: a conflict.
        t(7, upload(7), [a(71, 3, ["cat", "dog"], task=7)]),
        # Local-files storage URL.
        t(8, "/data/local-files/?d=mnt/photos/images/img_8.png", [a(81, 1, ["dog"], task=8)]),
        # An image we do not have: an orphan label.
        t(9, "/data/upload/7/0badf00d-elsewhere.png", [a(91, 1, ["cat"], task=9)]),
        # img_5 is not in the export at all: a missing label.
    ]


@pytest.fixture
def raw(make_raw, arrays):
    return make_raw({item: arrays.png(i) for i, item in enumerate(IMAGES)})


def write(kind: str, tmp_path, ls):
    tasks = project(ls)
    if kind == "json":
        path = tmp_path / "export.json"
        path.write_text(json.dumps(tasks))
    elif kind == "json-min":
        path = tmp_path / "export-min.json"
        path.write_text(json.dumps(ls.json_min(tasks), indent=2))
    else:
        path = tmp_path / "export.csv"
        path.write_text(ls.csv(tasks))
    return path


@pytest.mark.parametrize("kind", ["json", "json-min", "csv"])
def test_several_annotators_cancelled_tie_and_predictions(kind, raw, tmp_path, cfg, ls):
    path = write(kind, tmp_path, ls)
    summary = import_labels(raw, tmp_path / "out", cfg(path=str(path)))
    out = tmp_path / "out"
    labels = pd.read_parquet(out / "labels.parquet")
    assert labels[["item_id", "label", "annotators"]].values.tolist() == [
        ["images/img_0.png", "cat", 3],
        ["images/img_1.png", "dog", 2],
        ["images/img_4.png", "bird", 1],
        ["images/img_8.png", "dog", 1],
    ]
    assert labels["agreement"].tolist() == pytest.approx([2 / 3, 1.0, 1.0, 1.0])
    assert json.loads((out / "classes.json").read_text()) == {"classes": ["bird", "cat", "dog"]}

    issues = pd.read_parquet(out / "issues.parquet")
    assert issues[["item_id", "problem", "action"]].values.tolist() == [
        ["images/img_2.png", "tie", "quarantine"],
        ["images/img_3.png", "unreviewed", "drop"],
        ["images/img_5.png", "missing_label", "quarantine"],
        ["images/img_6.png", "empty_label", "quarantine"],
        ["images/img_7.png", "conflict", "quarantine"],
        ["", "orphan_label", "drop"],
    ]
    assert issues["reference"].tolist()[-1] == "/data/upload/7/0badf00d-elsewhere.png"
    tie = issues.iloc[0]
    assert tie["reference"] == upload(2) and "cat 1" in tie["detail"] and "dog 1" in tie["detail"]
    assert "annotator 3" in issues.iloc[4]["detail"]

    metrics = summary["metrics"]
    assert metrics["format"] == {"json": "label-studio-json", "json-min": "label-studio-json-min",
                                 "csv": "label-studio-csv"}[kind]
    assert metrics["majority_resolved"] == 1
    # JSON still holds the cancelled annotation; the converter already dropped it from the others.
    assert metrics["cancelled_skipped"] == (1 if kind == "json" else 0)
    assert metrics["problems"]["tie"]["count"] == 1
    assert metrics["problems"]["tie"]["examples"][0].startswith("images/img_2.png: 2 annotators tie")


def test_predictions_are_described_in_json(raw, tmp_path, cfg, ls):
    import_labels(raw, tmp_path / "out", cfg(path=str(write("json", tmp_path, ls))))
    issues = pd.read_parquet(tmp_path / "out" / "issues.parquet")
    detail = issues.loc[issues["problem"] == "unreviewed", "detail"].item()
    assert "only predictions" in detail and "resnet18-v3" in detail and "cat" in detail


def test_votes_keep_cancelled_and_unreviewed_rows(tmp_path, ls):
    votes = read_label_studio_json(write("json", tmp_path, ls))
    assert votes["kind"].value_counts().to_dict() == {"label": 13, "cancelled": 1, "unreviewed": 1}
    cancelled = votes[votes["kind"] == "cancelled"].iloc[0]
    assert cancelled["annotator"] == "3" and cancelled["where"] == "task 2, annotation 23"


def test_policies_for_ties_and_unreviewed(raw, tmp_path, cfg, ls):
    path = str(write("json", tmp_path, ls))
    import_labels(raw, tmp_path / "a", cfg(path=path, on_conflict="drop", on_unreviewed="quarantine"))
    issues = pd.read_parquet(tmp_path / "a" / "issues.parquet").set_index("problem")
    assert issues.loc["tie", "action"] == "drop" and issues.loc["unreviewed", "action"] == "quarantine"
    with pytest.raises(LabelError) as err:
        import_labels(raw, tmp_path / "b", cfg(path=path, on_unreviewed="fail"))
    assert str(err.value).startswith(f"{path}: 1 unreviewed (labels.on_unreviewed: fail), e.g. images/img_3.png")
    assert not (tmp_path / "b").exists()


def test_user_objects_and_custom_tag_names(raw, tmp_path, cfg, ls):
    """Older exports give completed_by as a user object; the Choices tag and data key may be renamed."""
    tasks = []
    for i in range(2):
        ann = ls.annotation(100 + i, 0, ["cat"], task=i, from_name="species")
        ann["completed_by"] = {"id": 5 + i, "email": f"user{i}@example.com"}
        task = ls.task(i, upload(i), [ann])
        task["data"] = {"photo": task["data"]["image"], "caption": "a photo"}
        tasks.append(task)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    votes = read_label_studio_json(path, image_keys=("image",))
    assert votes["annotator"].tolist() == ["user0@example.com", "user1@example.com"]
    import_labels(raw, tmp_path / "out", cfg(path=str(path)))
    assert pd.read_parquet(tmp_path / "out" / "labels.parquet")["label"].tolist() == ["cat", "cat"]


def test_non_choices_project_is_refused(raw, tmp_path, cfg, ls):
    task = ls.task(1, upload(0), [ls.annotation(1, 1, ["cat"], task=1)])
    task["annotations"][0]["result"][0]["type"] = "rectanglelabels"
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([task]))
    with pytest.raises(LabelError, match=r"boxes\.json: not a Choices \(classification\) project"):
        import_labels(raw, tmp_path / "out", cfg(path=str(path)))


def test_labelstudio_does_not_import_from_labels():
    # The import graph runs one way: labels (the stage) uses labelstudio, never the reverse.
    import ast
    from pathlib import Path

    import imgpipe.labelstudio as pkg

    for path in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("imgpipe.labels"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("imgpipe.labels") for a in node.names), path.name


def test_broken_json_choice_in_a_csv_export_is_one_line_naming_file_and_line(tmp_path):
    # Before: the broken cell became a class named '["cat", "dog"' without a word.
    from imgpipe.labelstudio.read import read_label_studio_csv

    path = tmp_path / "export.csv"
    path.write_text('image,choice,id,annotator,annotation_id\n'
                    'a.png,cat,1,1,11\n'
                    'b.png,"[""cat"", ""dog""",2,1,12\n'
                    'c.png,[unsure],3,1,13\n')
    with pytest.raises(LabelError, match=r"export\.csv: task 2, annotation 12: the choice is broken JSON"):
        read_label_studio_csv(path)
    path.write_text('image,choice,id,annotator,annotation_id\na.png,[unsure],1,1,11\n')
    assert read_label_studio_csv(path)["label"].tolist() == ["[unsure]"]  # a name with a bracket stays a name


@pytest.mark.parametrize("annotations,match", [
    (["not an annotation"], r"task #2: annotations #1 is a str"),
    ([{"id": 5, "result": ["choices"]}], r"task #2: annotations #1: 'result' must be a list of objects"),
])
def test_malformed_annotation_in_a_json_export_is_refused_not_skipped(tmp_path, ls, annotations, match):
    # Before: a non-object annotation or result was skipped, so the image silently lost a vote.
    tasks = [ls.task(1, "a.png", [ls.annotation(11, 1, ["cat"], task=1)]),
             {"id": 2, "data": {"image": "b.png"}, "annotations": annotations}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    with pytest.raises(LabelError, match=rf"export\.json: {match}"):
        read_label_studio_json(path)
