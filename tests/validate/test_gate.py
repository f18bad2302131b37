import numpy as np
import pandas as pd
import pytest

from imgpipe.errors import PipelineError, ValidationFailed
from imgpipe.io import read_parquet
from imgpipe.params.validate import ValidateParams
from imgpipe.split import assign_splits
from imgpipe.validate.suite import load_suite
from imgpipe.validate.validation import GateReport, validate_dataset

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


SPEC = {"height": 12, "width": 12, "channels": 3}


def _run(manifest, table, issues, rejects=None, report=None, configured=None, suite=SUITE, **cfg):
    rejects = manifest.iloc[:0][["item_id", "source_path"]].assign(reason="") if rejects is None else rejects
    return validate_dataset(manifest, table, issues, CLASSES, rejects, suite, ValidateParams(**cfg),
                    image_spec=SPEC, configured=configured or SPEC, report=report)


def test_clean_dataset_passes_with_stratified_splits(tmp_path):
    manifest, table, issues, _ = _run_inputs = _inputs(tmp_path)
    result = _run(manifest, table, issues)
    assert len(result.quarantine) == 0
    counts = result.dataset.groupby(["split", "label"]).size()
    # Drawn per item (stable under corrections): 60 images, ~12 to test (0.2), ~2 to val (0.05 of the rest).
    sizes = counts.groupby(level="split").sum()
    assert 6 <= sizes["test"] <= 18 and 2 <= sizes["val"] <= 12 and sizes.sum() == 60
    assert result.quality["expectations_failed"] == 0
    assert {"batch": "images", "expectation": "expect_column_values_to_not_be_null", "column": "label",
            "level": "row", "reason": "no label", "success": True, "unexpected": 0, "unexpected_examples": [],
            "observed": None} in result.expectations


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
    assert result.detail["quarantine_by_reason"] == {"blank image (a single flat colour)": 2, "no label": 1}
    assert set(result.review.loc[result.review["decision"] == "quarantined", "item_id"]) == {ids[5], ids[7]}


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
    df = pd.DataFrame({"source_split": [""] * 40, "label": ["a", "b"] * 20,
                       "item_id": [f"img/{i:03d}.png" for i in range(40)]})
    split = assign_splits(df, ValidateParams(test_fraction=0, val_fraction=0.25))
    assert (split == "test").sum() == 0 and 5 <= (split == "val").sum() <= 15  # drawn per item
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


def test_a_label_problem_is_one_reason_not_two(tmp_path):
    """The labels stage quarantined an unlabelled image; the suite's 'no label' is the same finding."""
    _, y = class_images(20, 3, size=12)
    labels = list(y)
    labels[4] = labels[9] = None
    issues = [
        {"item_id": "img/004.png", "reference": "004.png", "problem": "missing_label", "detail": "", "action": "quarantine"},
        {"item_id": "img/009.png", "reference": "009.png", "problem": "unknown_class", "detail": "zebra",
         "action": "quarantine"},
    ]
    manifest, table, issue_table, _ = _inputs(tmp_path, labels=labels, issues=issues)
    result = _run(manifest, table, issue_table, max_quarantine_fraction=0.5)
    assert result.detail["quarantine_by_reason"] == {"label missing label": 1, "label unknown class": 1}
    assert result.quality["images_quarantined"] == 2
    quarantined = result.review[result.review["decision"] == "quarantined"]
    assert sorted(quarantined["check"]) == ["label_import", "label_import"]


def test_a_vanished_class_fails_the_gate_naming_it(tmp_path):
    _, y = class_images(20, 3, size=12)
    labels = [lab if lab != 2 else 1 for lab in y]  # class c collapsed into b
    manifest, table, issues, _ = _inputs(tmp_path, labels=labels)
    report = GateReport()
    with pytest.raises(ValidationFailed, match=r"fewer images than validate.min_class_count .*: c"):
        _run(manifest, table, issues, report=report)
    assert report.offending["item_id"].tolist() == ["c"]
    with pytest.raises(ValidationFailed, match="more than validate.max_class_share"):
        _run(manifest, table, issues, min_class_count=0, max_class_share=0.5)


def test_image_size_other_than_configured_fails_the_gate(tmp_path):
    manifest, table, issues, _ = _inputs(tmp_path)
    with pytest.raises(ValidationFailed, match="image height is not preprocess.size"):
        _run(manifest, table, issues, configured={"height": 16, "width": 12, "channels": 3})


def test_preprocess_rejects_have_their_own_limit(tmp_path):
    manifest, table, issues, _ = _inputs(tmp_path)
    rejects = pd.DataFrame({"item_id": ["x1", "x2", "x3", "x4"], "source_path": ["x1", "x2", "x3", "x4"],
                            "reason": "not an image"})
    report = GateReport()
    with pytest.raises(ValidationFailed, match=r"4 of 64 files could not be decoded .*max_reject_fraction=5.0%"):
        _run(manifest, table, issues, rejects=rejects, report=report)
    assert set(report.offending["item_id"]) == {"x1", "x2", "x3", "x4"}
    ok = _run(manifest, table, issues, rejects=rejects, max_reject_fraction=0.1)
    assert ok.quality["images_rejected_by_preprocess"] == 4 and ok.quality["reject_fraction"] == 0.0625


def test_a_failed_quarantine_limit_leaves_the_offending_rows(tmp_path):
    manifest, table, issues, ids = _inputs(tmp_path, blank=range(0, 10))
    report = GateReport()
    with pytest.raises(ValidationFailed):
        _run(manifest, table, issues, report=report, max_quarantine_fraction=0.05)
    assert set(report.offending["item_id"]) == set(ids[:10])
    assert report.quality["images_quarantined"] == 10 and report.expectations


def test_a_row_level_aggregate_expectation_is_refused_naming_it(tmp_path):
    """A column mean cannot name rows: row-level, it used to fail with nothing to quarantine and the
    gate passed. Refused before the run; as table-level it fails the stage."""
    manifest, table, issues, _ = _inputs(tmp_path)
    mean = {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "brightness_p50", "min_value": 250}}
    suite = {**SUITE, "expectations": [*SUITE["expectations"], mean]}
    with pytest.raises(PipelineError, match=r"\(expect_column_mean_to_be_between on brightness_p50\): is row-level "
                                            r".* set meta.level to table"):
        _run(manifest, table, issues, suite=suite)
    as_table = {**mean, "meta": {"level": "table", "reason": "too dark on average"}}
    with pytest.raises(ValidationFailed, match="too dark on average"):
        _run(manifest, table, issues, suite={**SUITE, "expectations": [*SUITE["expectations"], as_table]})
