"""Comparing experiments reads well: after two experiments, the compact `dvc exp show` command the
README gives names the varied params and `accuracy` within 120 columns, with no cell cut to "…"."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import PROJECT, copy_clone

pytestmark = pytest.mark.e2e

WIDTH = 120


def readme_command() -> list[str]:
    """The compact comparison command, as the README's "Comparing experiments" section shows it."""
    text = (PROJECT / "README.md").read_text()
    section = text.split("## Comparing experiments", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("  #")[0].strip() for line in section.splitlines()
                if line.startswith("dvc exp show --only-changed")]
    assert commands, "the README shows no `dvc exp show --only-changed ...` command"
    return shlex.split(commands[0])


def test_compact_table_names_the_varied_params_and_accuracy(reproduced_once, tmp_path):
    clone = copy_clone(reproduced_once, tmp_path / "project")
    clone.commit("baseline: the default pipeline, reproduced")
    clone.dvc("exp", "run", "-S", "train.lr=0.02", "-S", "train.epochs=2")
    clone.dvc("exp", "run", "-S", "train.lr=0.1", "-S", "train.epochs=4")
    command = readme_command()
    assert command[:3] == ["dvc", "exp", "show"]
    proc = clone.run("env", f"COLUMNS={WIDTH}", *clone_dvc_prefix(), *command[1:], "--no-pager")
    lines = [line.rstrip() for line in proc.stdout.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= WIDTH, proc.stdout
    header = lines[1]
    for column in ("Experiment", "accuracy", "train.lr", "train.epochs"):
        assert re.search(rf"(^|\s){re.escape(column)}(\s|$)", header), proc.stdout
    assert "…" not in proc.stdout, proc.stdout
    rows = [line for line in lines if re.search(r"\b0\.(02|1)\b", line)]
    assert len(rows) >= 2, proc.stdout  # both experiments, with their learning rates shown


def clone_dvc_prefix() -> list[str]:
    import sys

    return [sys.executable, "-m", "dvc"]
