import importlib
import os
import pkgutil

import pytest

import imgpipe.params
from imgpipe.errors import PipelineError
from imgpipe.io import atomic_dir, atomic_file, dumps_json
from imgpipe.params.base import PARAMS_FILE, Section, load, read_params_file
from imgpipe.params.labels import LabelsParams
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.params.train import TrainParams


def section_models() -> dict[str, type[Section]]:
    """Every section module's model, by section name (``imgpipe/params/<section>.py``)."""
    models = {}
    for mod in pkgutil.iter_modules(imgpipe.params.__path__):
        if mod.name == "base":
            continue
        module = importlib.import_module(f"imgpipe.params.{mod.name}")
        # The section's model is <Section>Params; a module may hold nested sub-section models too.
        model = getattr(module, f"{mod.name.capitalize()}Params")
        assert issubclass(model, Section)
        models[mod.name] = model
    return models


def test_repo_params_file_loads_every_section_and_has_a_module_for_each():
    data = read_params_file(PARAMS_FILE)
    models = section_models()
    assert set(models) == set(data), "one params module per params.yaml section"
    for name, model in models.items():
        load(name, model, data=data)


def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(PipelineError, match=r"train\.learning_rate"):
        load("train", TrainParams, path)


def test_wrong_type_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("preprocess:\n  mode: CMYK\n")
    with pytest.raises(PipelineError, match=r"preprocess\.mode"):
        load("preprocess", PreprocessParams, path)


@pytest.mark.parametrize("body", ["size: [0, 32]", "background: [255, 300, 0]", "size: [32]"])
def test_preprocess_bounds(tmp_path, body):
    path = tmp_path / "params.yaml"
    path.write_text(f"preprocess:\n  {body}\n")
    with pytest.raises(PipelineError, match=r"preprocess\.(size|background)"):
        load("preprocess", PreprocessParams, path)


def test_numeric_classes_become_text(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("labels:\n  classes: [0, 1, 2]\n")
    assert load("labels", LabelsParams, path).classes == ("0", "1", "2")


def test_not_yaml_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        read_params_file(path)


def test_atomic_dir_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert (final / "a.txt").read_text() == "one"
    assert os.listdir(tmp_path) == ["out"], "no temporary directory may be left behind"


def test_atomic_file_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(ValueError), atomic_file(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_json_is_canonical():
    assert dumps_json({"b": 1, "a": [1.5]}) == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'


def test_atomic_dir_cleans_up_what_a_killed_run_left(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".out.tmp-{dead}-abcdef12"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_stage_run_out_of_order_names_the_missing_input(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    proc = subprocess.run([sys.executable, "-m", "stages.augment"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "augment failed: missing input data/labels/classes.json (run `dvc repro augment` to build what it needs)"
    ]


def test_an_unknown_key_says_it_is_no_param_of_the_stage_and_names_close_matches(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lrr: 0.1\n  foo: 1\n")
    with pytest.raises(PipelineError) as caught:
        load("train", TrainParams, path)
    assert str(caught.value) == (
        f"{path}: invalid parameters: "
        "unknown key train.lrr: not a param of the train stage (a typo? did you mean train.lr?); "
        "unknown key train.foo: not a param of the train stage (a typo?)")


def test_an_unknown_nested_key_names_the_sub_section_s_close_matches(tmp_path):
    from imgpipe.params.validate import ValidateParams

    path = tmp_path / "params.yaml"
    path.write_text("validate:\n  near_duplicates:\n    treshold: 3\n")
    with pytest.raises(PipelineError, match=r"unknown key validate\.near_duplicates\.treshold: not a param of the "
                                            r"validate stage \(a typo\? did you mean validate\.near_duplicates\.threshold"):
        load("validate", ValidateParams, path)
