"""Comparing experiments: `dvc exp run -S train.*` reruns train and evaluate only; the experiment
is listed with its params and metrics; and the compact `dvc exp show` command docs/experiments.md gives
names the varied params and `accuracy` within 120 columns, with no cell cut to "…"."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import PROJECT, copy_clone, ran_stages

pytestmark = pytest.mark.e2e

WIDTH = 120


def readme_command() -> list[str]:
    """The compact comparison command, as docs/experiments.md shows it."""
    text = (PROJECT / "docs" / "experiments.md").read_text()
    section = text.split("# Comparing experiments", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("  #")[0].strip() for line in section.splitlines()
                if line.startswith("dvc exp show --only-changed")]
    assert commands, "docs/experiments.md shows no `dvc exp show --only-changed ...` command"
    return shlex.split(commands[0])


def test_compact_table_names_the_varied_params_and_accuracy(reproduced_once, tmp_path):
    clone = copy_clone(reproduced_once, tmp_path / "project")
    clone.commit("baseline: the default pipeline, reproduced")
    first = clone.dvc("exp", "run", "-n", "slow-lr", "-S", "train.lr=0.02", "-S", "train.epochs=1")
    assert sorted(ran_stages(first.stdout + first.stderr)) == ["crossval", "evaluate", "train"]

    shown = json.loads(clone.dvc("exp", "show", "--json").stdout)
    exps = [e for row in shown for e in (row.get("experiments") or []) for e in e.get("revs", [])
            if e.get("name") == "slow-lr"]
    assert exps, shown
    data = exps[0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["epochs"] == 1
    eval_metrics = data["metrics"]["metrics/eval.json"]["data"]
    assert set(eval_metrics) >= {"accuracy", "precision_macro", "recall_macro", "f1_macro"}

    command = readme_command()
    assert command[:3] == ["dvc", "exp", "show"]
    proc = clone.run("env", f"COLUMNS={WIDTH}", *clone_dvc_prefix(), *command[1:], "--no-pager")
    lines = [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= WIDTH, proc.stdout
    header = lines[1]
    for column in ("Experiment", "accuracy", "train.lr", "train.epochs"):
        assert re.search(rf"(^|\s){re.escape(column)}(\s|$)", header), proc.stdout
    assert "…" not in proc.stdout, proc.stdout
    # the workspace (train.lr auto: the model's recipe) and the experiment, each with its lr
    lrs = {m.group(1) for line in lines for m in [re.search(r"\s(0\.02|auto)\s", f" {line} ")] if m}
    assert lrs == {"0.02", "auto"}, proc.stdout


def clone_dvc_prefix() -> list[str]:
    import sys

    return [sys.executable, "-m", "dvc"]


# Three experiments, each changing one more param from the baseline (and all at one epoch).
VARIED = {"slow": ("train.lr=0.3",), "no-bf16": ("train.bf16=false",), "sharp": ("train.label_smoothing=0.0",)}


def test_compact_table_keeps_every_varied_param_and_plots_diff_reads_offline(reproduced_once, tmp_path):
    clone = copy_clone(reproduced_once, tmp_path / "project")
    clone.commit("baseline: the default pipeline, reproduced")
    base = clone.params()["train"]
    for name, sets in VARIED.items():
        # every experiment names all its params, so none inherits another's (`-S` writes params.yaml)
        pinned = [f"train.lr={base['lr']}", f"train.bf16={str(base['bf16']).lower()}",
                  f"train.label_smoothing={base['label_smoothing']}"]
        own = {s.split("=")[0] for s in sets}
        args = [a for p in pinned if p.split("=")[0] not in own for a in ("-S", p)]
        args += [a for s in sets for a in ("-S", s)]
        clone.dvc("exp", "run", "-n", name, "-S", "train.epochs=1", *args)

    command = readme_command()
    proc = clone.run("env", f"COLUMNS={WIDTH}", *clone_dvc_prefix(), *command[1:], "--no-pager")
    lines = [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= WIDTH, proc.stdout
    header = lines[1]
    for column in ("Experiment", "accuracy", "train.epochs", "train.lr", "train.bf16", "train.label_smoothing"):
        assert re.search(rf"(^|\s){re.escape(column)}(\s|$)", header), proc.stdout
    assert "…" not in proc.stdout, proc.stdout
    for name in VARIED:
        assert any(f"[{name}]" in line for line in lines), proc.stdout

    # `dvc plots diff` of two experiments: every figure it embeds as an image is a local PNG file.
    out = tmp_path / "plots"
    clone.dvc("plots", "diff", "slow", "sharp", "-o", str(out))
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images and all((out / src).is_file() and (out / src).read_bytes()[:4] == b"\x89PNG" for src in images)
    for figure in ("confusion.png", "per_class.png", "reliability.png"):
        assert sum(src.endswith("eval_plots_" + figure) for src in images) == 2, images  # one per experiment
