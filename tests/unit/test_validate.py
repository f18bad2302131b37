import numpy as np
import pandas as pd
import pytest

from imgpipe.clean.run import validate
from imgpipe.clean.suite import load_suite
from imgpipe.errors import ValidationFailed
from imgpipe.io import read_parquet
from imgpipe.params.validate import ValidateParams
from imgpipe.split import assign_splits

from factories import class_images, write_labels, write_preprocessed

SUITE = load_suite("expectations/image_dataset.json")
CLASSES = ["a", "b", "c"]


def _inputs(tmp_path, n_per_class=20, splits=None, labels=None, issues=None, blank=()):
    images, y = class_images(n_per_class, len(CLASSES), size=12)
    for i in blank:
        images[i] = 128
    ids = [f"img/{i:03d}.png" for i in range(len(images))]
    manifest = write_preprocessed(tmp_path / "pre", images, ids, splits)
    labs = list(y) if labels is None else labels
    table = write_labels(tmp_path / "lab", ids, labs, CLASSES, issues)
    return manifest, table, read_parquet(tmp_path / "lab" / "issues.parquet"), ids


def _run(manifest, table, issues, **cfg):
    return validate(manifest, table, issues, CLASSES, manifest.iloc[:0], SUITE, ValidateParams(**cfg))


def test_clean_dataset_passes_with_stratified_splits(tmp_path):
    manifest, table, issues, _ = _run_inputs = _inputs(tmp_path)
    result = _run(manifest, table, issues)
    assert len(result.quarantine) == 0
    counts = result.dataset.groupby(["split", "label"]).size()
    # 20 per class: 4 to test (0.2), then 0.15 of 16 -> 2 to val, 14 to train, for every class.
    assert set(counts["test"]) == {4} and set(counts["val"]) == {2} and set(counts["train"]) == {14}
    assert result.quality["expectations_failed"] == 0
    assert {"expectation": "expect_column_values_to_not_be_null", "column": "label", "level": "row",
            "reason": "no label", "success": True, "unexpected": 0} in result.expectations


def test_splits_are_seeded_and_stable(tmp_path):
    manifest, table, issues, _ = _inputs(tmp_path)
    a = _run(manifest, table, issues).dataset["split"].tolist()
    b = _run(manifest, table, issues).dataset["split"].tolist()
    c = _run(manifest, table, issues, seed=99).dataset["split"].tolist()
    assert a == b and a != c


def test_source_test_split_is_kept(tmp_path):
    splits = ["train"] * 45 + ["test"] * 15
    manifest, table, issues, _ = _inputs(tmp_path, splits=splits)
    result = _run(manifest, table, issues)
    by_source = dict(zip(result.dataset["item_id"], result.dataset["split"], strict=True))
    ids = result.dataset["item_id"].tolist()
    assert [by_source[i] for i in ids[45:]] == ["test"] * 15
    assert "test" not in [by_source[i] for i in ids[:45]]


def test_missing_label_and_blank_image_are_quarantined_with_every_reason(tmp_path):
    _, y = class_images(20, 3, size=12)
    labels = list(y)
    labels[5] = None
    manifest, table, issues, ids = _inputs(tmp_path, labels=labels, blank=(5, 7))
    result = _run(manifest, table, issues, max_quarantine_fraction=0.5)
    q = result.quarantine.set_index("item_id")["reasons"].to_dict()
    assert set(q) == {ids[5], ids[7]}
    assert "no label" in q[ids[5]] and "blank image" in q[ids[5]]
    assert q[ids[7]] == "blank image (a single flat colour)"
    assert ids[5] not in set(result.dataset["item_id"])
    assert result.quality["quarantine_by_reason"] == {"blank image (a single flat colour)": 2, "no label": 1}


def test_label_issue_with_quarantine_action_is_quarantined(tmp_path):
    issue = {"item_id": "img/003.png", "reference": "003.png", "problem": "conflict",
             "detail": "a (1) vs b (1)", "action": "quarantine"}
    manifest, table, issues, _ = _inputs(tmp_path, issues=[issue])
    result = _run(manifest, table, issues, max_quarantine_fraction=0.5)
    assert result.quarantine["reasons"].tolist() == ["label conflict: a (1) vs b (1)"]


def test_too_much_quarantined_fails_with_summary(tmp_path):
    manifest, table, issues, _ = _inputs(tmp_path, blank=range(0, 10))
    with pytest.raises(ValidationFailed, match=r"10 of 60 images quarantined .* blank image"):
        _run(manifest, table, issues, max_quarantine_fraction=0.05)


def test_empty_dataset_fails_on_the_table_expectation(tmp_path):
    manifest, table, issues, _ = _inputs(tmp_path)
    with pytest.raises(ValidationFailed, match="the dataset is empty"):
        _run(manifest.iloc[:0], table, issues)


def test_assign_splits_without_test_fraction_keeps_everything_in_train_and_val():
    df = pd.DataFrame({"source_split": [""] * 40, "label": ["a", "b"] * 20})
    split = assign_splits(df, ValidateParams(test_fraction=0, val_fraction=0.25))
    assert (split == "test").sum() == 0 and (split == "val").sum() == 10
    assert np.all(df.groupby(split.to_numpy())["label"].nunique() == 2)


def test_unlabelled_image_dropped_by_label_policy_is_not_quarantined(tmp_path):
    _, y = class_images(20, 3, size=12)
    labels = list(y)
    labels[2] = labels[3] = None
    issues = [
        {"item_id": "img/002.png", "reference": "002.png", "problem": "unreviewed",
         "detail": "predictions only", "action": "drop"},
        {"item_id": "img/003.png", "reference": "003.png", "problem": "missing_label",
         "detail": "", "action": "quarantine"},
    ]
    manifest, table, issue_table, _ = _inputs(tmp_path, labels=labels, issues=issues)
    result = _run(manifest, table, issue_table, max_quarantine_fraction=0.5)
    assert result.quarantine["item_id"].tolist() == ["img/003.png"]
    assert "img/002.png" not in set(result.dataset["item_id"])
    assert result.quality["images_dropped_by_label_policy"] == 1
    assert result.quality["images_decoded"] == 60
