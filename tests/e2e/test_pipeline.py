"""The pipeline backbone end to end: real dvc, real git, the built-in digits source."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from conftest import make_clone, ran_stages

pytestmark = pytest.mark.e2e

ALL = ["download", "preprocess", "labels", "validate", "card", "augment", "train", "crossval", "evaluate"]


def test_repro_from_clean_clone_runs_every_stage_then_is_a_noop(reproduced):
    assert sorted(ran_stages(reproduced.first_output)) == sorted(ALL)
    status = reproduced.dvc("status", "--json")
    assert json.loads(status.stdout) == {}
    started = time.perf_counter()
    again = reproduced.dvc("repro")
    assert ran_stages(again.stdout + again.stderr) == []
    assert time.perf_counter() - started < 20  # the budget (2 s) is measured by benchmarks/
    metrics = json.loads((reproduced.root / "metrics" / "eval.json").read_text())
    assert set(metrics) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro"}
    # The shrunk e2e config (3 epochs) only has to show the pipeline learns; the full default reaches
    # 0.95 on digits (README, benchmarks/bench_pipeline.py).
    assert metrics["accuracy"] >= 0.8


def test_crossval_switched_on_reruns_only_itself_and_lists_suspects(reproduced):
    # Off (the default) it ran in the first repro and wrote empty outputs.
    assert json.loads((reproduced.root / "metrics" / "crossval.json").read_text())["enabled"] is False
    reproduced.set_params({"crossval.enabled": True, "crossval.folds": 2, "crossval.epochs": 1,
                           "crossval.width": 8})
    proc = reproduced.dvc("repro")
    assert ran_stages(proc.stdout + proc.stderr) == ["crossval"]
    metrics = json.loads((reproduced.root / "metrics" / "crossval.json").read_text())
    assert metrics["enabled"] is True and metrics["folds"] == 2 and metrics["images"] > 1000
    errors = (reproduced.root / "metrics" / "crossval" / "label_errors.csv").read_text().splitlines()
    assert errors[0] == "rank,item_id,source_path,label,suggested_label,label_score,suggested_score,split,fold"
    assert len(errors) - 1 == metrics["suspected_label_errors"]
    assert (reproduced.root / "metrics" / "crossval" / "plots" / "label_errors.png").is_file()
    shown = json.loads(reproduced.dvc("exp", "show", "--json").stdout)
    assert "suspected_label_errors" in json.dumps(shown) and "crossval.json" in json.dumps(shown)


def test_lock_records_each_stage_section_and_metrics_are_uncached(reproduced):
    lock = yaml.safe_load((reproduced.root / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(ALL)
    train_params = lock["train"]["params"]["params.yaml"]
    assert set(train_params["train"]) >= {"epochs", "lr", "model"}  # the whole section, by value
    assert not any(k.startswith("augment") for k in train_params)
    dvcyaml = yaml.safe_load((reproduced.root / "dvc.yaml").read_text())
    for stage in dvcyaml["stages"].values():
        for entry in stage.get("metrics", []):
            ((_, props),) = entry.items()
            assert props == {"cache": False}


def test_plots_render_offline_with_the_confusion_template(reproduced):
    plots = json.loads(reproduced.dvc("plots", "show", "--json").stdout)["data"]
    assert set(plots) >= {"Confusion matrix (test split)", "Training curves", "Accuracy", "Learning rate"}
    # Every figure also as a PNG image plot, which renders with no network.
    assert "metrics/eval/plots/confusion.png" in plots
    assert "reports/validate/sheets/near_duplicates.png" in plots
    assert {f"metrics/train/plots/png/{n}.png" for n in ("loss", "accuracy", "lr_last")} <= set(plots)
    confusion = plots["Confusion matrix (test split)"][0]["content"]
    assert confusion["data"]["values"][0].keys() >= {"actual", "predicted"}
    # issue 21's per-class view: the card's picture, the report's picture and its bar chart
    assert {"data/card/per_class.png", "metrics/eval/plots/per_class_report.png"} <= set(plots)
    report = (reproduced.root / "metrics/eval/per_class_report.csv").read_text().splitlines()
    assert report[0].startswith("rank,class,misclassified,confused_with") and len(report) == 11
    card = json.loads((reproduced.root / "data/card/card.json").read_text())["per_class"]
    assert [r["class"] for r in card["classes"]] == [str(d) for d in range(10)]
    assert card["check_status"]["near_duplicate"] == "on" and "box_empty" not in card["columns"]


def test_outputs_are_byte_identical_across_clean_runs(reproduced, tmp_path):
    other = make_clone(tmp_path / "second")
    other.dvc("repro")
    first = yaml.safe_load(reproduced.first_lock)["stages"]
    second = yaml.safe_load((other.root / "dvc.lock").read_text())["stages"]
    for stage in ALL:
        outs_a = {o["path"]: o["md5"] for o in first[stage].get("outs", [])}
        outs_b = {o["path"]: o["md5"] for o in second[stage].get("outs", [])}
        assert outs_a and outs_a == outs_b, stage  # every stage has outputs: none compared is no pass
