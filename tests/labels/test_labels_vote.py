"""``labels.vote``: majority against a reliability-weighted (Dawid-Skene) vote, and the annotator
report, on a generated Label Studio export in which one annotator is mostly wrong."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imgpipe.labels.importer import import_labels

CLASSES = ["bird", "cat", "dog"]
N_ALL_THREE, N_PAIRS = 45, 15


def _truth(i: int) -> str:
    return CLASSES[i % 3]


def _next(label: str) -> str:
    return CLASSES[(CLASSES.index(label) + 1) % 3]


def _export(ls) -> list[dict]:
    """good1 is always right; good2 is right but for every 10th image (i % 10 == 1), where it says the next
    class; bad@ says the next class except for every 5th image. The last N_PAIRS images are
    labelled by good1 and bad@ only, who then disagree: a majority vote ties on them, and on
    every 10th of the first images it picks the wrong class (good2 and bad@ agree there)."""
    tasks, ann_id = [], 0
    for i in range(N_ALL_THREE + N_PAIRS):
        truth = _truth(i)
        votes = {"good1@example.com": truth, "bad@example.com": truth if i % 5 == 0 and i < N_ALL_THREE else _next(truth)}
        if i < N_ALL_THREE:
            votes["good2@example.com"] = _next(truth) if i % 10 == 1 else truth
        annotations = []
        for who, label in votes.items():
            ann_id += 1
            annotations.append(ls.annotation(ann_id, {"email": who}, [label], task=i + 1, minute=ann_id % 60))
        tasks.append(ls.task(i + 1, f"/data/upload/1/img{i:03d}.png", annotations))
    return tasks


@pytest.fixture
def project(make_raw, arrays, ls, tmp_path):
    raw = make_raw({f"images/img{i:03d}.png": arrays.png() for i in range(N_ALL_THREE + N_PAIRS)})
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_export(ls)))
    return raw, export


def _labels(out) -> pd.Series:
    return pd.read_parquet(out / "labels.parquet").set_index("item_id")["label"]


def test_reliability_weighted_vote_outvotes_a_mostly_wrong_annotator(project, cfg, tmp_path):
    raw, export = project
    truth = {f"images/img{i:03d}.png": _truth(i) for i in range(N_ALL_THREE + N_PAIRS)}

    majority = import_labels(raw, tmp_path / "majority", cfg(path=str(export), classes=CLASSES))
    labels = _labels(tmp_path / "majority")
    wrong = sum(labels[item] != truth[item] for item in labels.index)
    assert len(labels) == N_ALL_THREE and wrong == N_ALL_THREE // 10 + 1  # ties dropped, some wrong
    assert "tie 15" in majority["quarantined"]

    summary = import_labels(raw, tmp_path / "ds", cfg(path=str(export), classes=CLASSES, vote="dawid-skene"))
    labels = _labels(tmp_path / "ds")
    assert labels.to_dict() == truth  # every image, every label right
    assert summary["metrics"]["vote_overruled_majority"] == N_PAIRS + N_ALL_THREE // 10 + 1

    report = json.loads((tmp_path / "ds" / "annotators.json").read_text())
    by_name = {a["annotator"]: a for a in report["annotators"]}
    assert by_name["good1@example.com"]["agreement"] == 1.0
    assert by_name["bad@example.com"]["agreement"] < 0.25
    assert by_name["bad@example.com"]["estimated_accuracy"] < 0.3 < 0.8 < by_name["good2@example.com"]["estimated_accuracy"]
    assert by_name["good1@example.com"]["annotations"] == N_ALL_THREE + N_PAIRS
    assert report["images_with_several_votes"] == N_ALL_THREE + N_PAIRS
    assert -1 <= report["fleiss_kappa"] < 0.5 and report["krippendorff_alpha"] is not None
    lowest = report["lowest_agreement"]
    assert len(lowest) == 20 and lowest[0]["agreement"] == 0.5
    assert "bad@example.com: " in lowest[0]["votes"] and "good1@example.com: " in lowest[0]["votes"]
    assert summary["metrics"]["fleiss_kappa"] == report["fleiss_kappa"]
    assert "3 annotators" in summary["annotators"] and "bad@example.com" in summary["annotators"]


def test_single_annotator_files_report_no_agreement(make_raw, arrays, cfg, tmp_path):
    raw = make_raw({"cat/a.png": arrays.png(), "dog/b.png": arrays.png()})
    summary = import_labels(raw, tmp_path / "out", cfg(vote="dawid-skene"))
    report = json.loads((tmp_path / "out" / "annotators.json").read_text())
    assert report["images_with_several_votes"] == 0 and report["fleiss_kappa"] is None
    assert report["lowest_agreement"] == []
    assert "fleiss_kappa" not in summary["metrics"] and "annotators" not in summary
    assert _labels(tmp_path / "out").to_dict() == {"cat/a.png": "cat", "dog/b.png": "dog"}
