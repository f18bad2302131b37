"""`imgpipe diff`'s comparisons on hand-made tables: each change lands in exactly one list."""

from __future__ import annotations

import pandas as pd
import pytest

from imgpipe.diff import dataset_diff, markdown, model_diff


def frame(rows):
    return pd.DataFrame(rows, columns=["item_id", "label", "split"])


def test_dataset_diff_names_added_removed_relabelled_and_moved_images():
    a = frame([("a.png", "cat", "train"), ("b.png", "cat", "train"), ("c.png", "dog", "test"),
               ("d.png", "dog", "val")])
    b = frame([("a.png", "cat", "train"), ("b.png", "dog", "train"), ("c.png", "dog", "train"),
               ("e.png", "emu", "test")])
    labels_a = pd.DataFrame({"item_id": ["a.png", "b.png", "c.png", "d.png"], "label_source": ["csv:l.csv"] * 4})
    labels_b = pd.DataFrame({"item_id": ["a.png", "b.png", "c.png", "e.png"],
                             "label_source": ["label-studio-json:annotations/ls.json"] * 4})
    review_a = pd.DataFrame({"item_id": ["a.png"], "check": ["outlier"], "decision": ["flagged"]})
    review_b = pd.DataFrame({"item_id": ["b.png"], "check": ["label_issue"], "decision": ["flagged"]})
    d = dataset_diff(a, b, labels_a, labels_b, review_a, review_b, {"images_valid": 4, "outliers": 1},
                     {"images_valid": 4, "outliers": 0}, {"content_hash": "1" * 64}, {"content_hash": "2" * 64})
    assert d["added"] == [{"item_id": "e.png", "label": "emu"}]
    assert d["removed"] == [{"item_id": "d.png", "label": "dog"}]
    assert d["relabelled"] == [{"item_id": "b.png", "old": "cat", "new": "dog", "source_a": "csv:l.csv",
                                "source_b": "label-studio-json:annotations/ls.json"}]
    assert d["split_moves"] == [{"item_id": "c.png", "old": "test", "new": "train"}]
    classes = {r["class"]: (r["a"], r["b"], r["delta"]) for r in d["classes"]}
    assert classes == {"cat": (2, 1, -1), "dog": (2, 2, 0), "emu": (0, 1, 1)}
    assert d["findings"]["appeared"] == [{"item_id": "b.png", "check": "label_issue", "decision": "flagged"}]
    assert d["findings"]["gone"] == [{"item_id": "a.png", "check": "outlier", "decision": "flagged"}]
    assert {r["name"]: r["delta"] for r in d["quality"]} == {"images_valid": 0, "outliers": -1}
    text = markdown({"a": "v1", "b": "v2", "notes": [], "dataset": d})
    assert "`b.png` | cat → dog | csv:l.csv → label-studio-json:annotations/ls.json" in text
    assert "1 added, 1 removed, 1 relabelled, 1 moved between splits" in text


def test_model_diff_lists_exactly_the_flipped_test_images():
    preds_a = pd.DataFrame({"item_id": ["x", "y", "z", "w"], "actual": ["1", "2", "3", "4"],
                            "predicted": ["1", "9", "3", "9"], "confidence": [0.9, 0.8, 0.7, 0.6]})
    preds_b = pd.DataFrame({"item_id": ["x", "y", "z", "w"], "actual": ["1", "2", "3", "4"],
                            "predicted": ["7", "2", "8", "9"], "confidence": [0.6, 0.9, 0.95, 0.5]})
    per_class = pd.DataFrame({"class": ["1", "2"], "precision": [1.0, 0.5], "recall": [1.0, 0.5],
                              "f1": [1.0, 0.5], "support": [1, 1]})
    m = model_diff({"accuracy": 0.5}, {"accuracy": 0.25}, per_class, per_class.assign(f1=[0.0, 1.0]),
                   preds_a, preds_b)
    assert [f["item_id"] for f in m["flips"]["right_to_wrong"]] == ["z", "x"]  # most confident first
    assert [f["item_id"] for f in m["flips"]["wrong_to_right"]] == ["y"]
    assert m["flips"]["compared"] == 4
    assert m["metrics"] == [{"name": "accuracy", "a": 0.5, "b": 0.25, "delta": -0.25}]
    assert [r["f1_delta"] for r in m["per_class"]] == [-1.0, 0.5]


def test_the_registry_has_a_dataset_images_artifact_at_the_preprocessed_shards():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    artifacts = yaml.safe_load((root / "dvc.yaml").read_text())["artifacts"]
    paths = yaml.safe_load((root / "params.yaml").read_text())["paths"]
    assert artifacts["dataset-images"]["path"] == paths["preprocessed"]
    assert artifacts["dataset-images"]["type"] == "dataset"


@pytest.mark.e2e  # the real dvc CLI in a temporary repository (about 10 s)
def test_a_revision_can_be_an_experiment_name(tmp_path):
    """dvc's file system alone resolves tags, branches and commits; experiment names go through
    `dvc.scm.resolve_rev` first. A one-stage project, one experiment."""
    import json
    import os
    import subprocess
    import sys

    from imgpipe.diff import Revision

    e = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
             GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")

    def run(*args):
        proc = subprocess.run(args, cwd=tmp_path, env=e, capture_output=True, text=True)
        assert proc.returncode == 0, f"{args}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"

    (tmp_path / "params.yaml").write_text("x: 1\n")
    (tmp_path / "score.py").write_text("import json, yaml\nx = yaml.safe_load(open('params.yaml'))['x']\n"
                                       "json.dump({'accuracy': x / 10}, open('eval.json', 'w'))\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  score:\n    cmd: python score.py\n    deps: [score.py]\n"
                                       "    params: [x]\n    metrics:\n      - eval.json:\n          cache: false\n")
    run("git", "init", "-q", "-b", "main")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "repro")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "base")
    run(sys.executable, "-m", "dvc", "exp", "run", "-q", "-n", "bigger-x", "-S", "x=7")
    assert Revision(tmp_path, "bigger-x").json("eval.json") == {"accuracy": 0.7}
    assert Revision(tmp_path, "main").json("eval.json") == {"accuracy": 0.1}
    assert json.loads((tmp_path / "eval.json").read_text()) == {"accuracy": 0.7}  # exp run applied it
