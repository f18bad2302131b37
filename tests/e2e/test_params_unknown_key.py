"""A key no stage knows fails the run with one line: `dvc exp run -S +train.foo=1` reruns train
(dvc.yaml tracks the train section whole), whose strict loader refuses the key by name."""

from __future__ import annotations

import pytest

from conftest import copy_clone, ran_stages

pytestmark = pytest.mark.e2e


def test_an_added_unknown_key_fails_the_experiment_with_one_line_naming_it(reproduced_once, tmp_path):
    clone = copy_clone(reproduced_once, tmp_path / "project")
    clone.commit("baseline: the default pipeline, reproduced")
    proc = clone.dvc("exp", "run", "-S", "+train.foo=1", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert ran_stages(output) == ["train"], output
    ours = [line for line in output.splitlines() if "train.foo" in line]
    assert ours == ["train failed: params.yaml: invalid parameters: "
                    "unknown key train.foo: not a param of the train stage (a typo?)"], output
    assert "Traceback" not in output, output
