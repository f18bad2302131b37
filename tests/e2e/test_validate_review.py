"""The validate stage under the real dvc CLI: the suite file is a tracked dependency, a failing
critical expectation stops `dvc repro` with a readable line and leaves its report, and the
review loop (export -> corrected Label Studio export -> labels.path -> dvc repro) works."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from conftest import copy_clone, ran_stages

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clone(reproduced_once, tmp_path_factory):
    return copy_clone(reproduced_once, tmp_path_factory.mktemp("clean") / "project")


def test_editing_the_suite_marks_validate_changed(clone):
    assert "validate" not in clone.dvc("status", "validate").stdout
    suite_path = clone.root / "expectations" / "image_dataset.json"
    original = suite_path.read_text()
    suite = json.loads(original)
    suite["expectations"][2]["meta"]["reason"] = "no label (edited)"
    suite_path.write_text(json.dumps(suite, indent=2))
    try:
        out = clone.dvc("status", "validate").stdout
        assert "validate:" in out and "image_dataset.json" in out
    finally:
        suite_path.write_text(original)


def test_a_failing_critical_expectation_stops_repro_with_a_readable_line(clone):
    clone.set_params({"validate.min_class_count": 100000})
    try:
        proc = clone.dvc("repro", "validate", check=False)
    finally:
        clone.set_params({"validate.min_class_count": 1})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in text
    line = next(ln for ln in text.splitlines() if ln.startswith("validate failed:"))
    assert "fewer images than validate.min_class_count" in line
    assert "reports/validate-failed/report.html" in line
    failed = clone.root / "reports" / "validate-failed"
    assert "The stage failed" in (failed / "report.html").read_text()
    assert len(pd.read_csv(failed / "offending.csv")) == 10  # every class is below the bound


def test_review_loop_through_label_studio(clone):
    clone.dvc("repro", "validate")  # back to the passing params (restored from DVC's run cache)
    review = pd.read_parquet(clone.root / "data" / "validated" / "review.parquet")
    suspects = review[review["check"] == "label_issue"]
    assert len(suspects) > 0 and (suspects["suggested_label"] != "").all()
    out = clone.run(sys.executable, "-m", "imgpipe.cli", "review", "--label-studio", "annotations/review.json",
                    "--label-config", "annotations/review.xml")
    assert "flagged for review first" in out.stdout
    tasks = json.loads((clone.root / "annotations" / "review.json").read_text())
    # The trained network's suspects (evaluate) come first when that stage has run; then validate's.
    first = next(t for t in tasks if t["data"].get("check") == "label_issue")
    assert first["data"]["source"] in ("validate", "evaluate+validate")
    assert first["predictions"][0]["result"][0]["value"]["choices"] == [suspects.iloc[0]["suggested_label"]]
    # A person accepts the suggestion for the first task and relabels one ordinary image.
    fixed = {first["data"]["item_id"]: first["predictions"][0]["result"][0]["value"]["choices"][0]}
    other = tasks[-1]
    old = other["annotations"][0]["result"][0]["value"]["choices"][0]
    fixed[other["data"]["item_id"]] = "0" if old != "0" else "1"
    for task in tasks:
        if task["data"]["item_id"] in fixed:
            task["annotations"][0]["result"][0]["value"]["choices"] = [fixed[task["data"]["item_id"]]]
            task["annotations"][0]["completed_by"] = "reviewer@example.invalid"
    (clone.root / "annotations" / "export.json").write_text(json.dumps(tasks))
    clone.set_params({"labels.path": "annotations/export.json"})
    proc = clone.dvc("repro", "validate")
    assert {"labels", "validate"} <= set(ran_stages(proc.stdout))
    labels = pd.read_parquet(clone.root / "data" / "labels" / "labels.parquet").set_index("item_id")["label"]
    assert len(labels) == len(tasks)
    for item, label in fixed.items():
        assert labels[item] == label
    data = pd.read_parquet(clone.root / "data" / "validated" / "dataset.parquet").set_index("item_id")["label"]
    assert data[other["data"]["item_id"]] == fixed[other["data"]["item_id"]]
