"""Every known bad input ends a stage with one line naming the file and the problem, exit status 1.

Stages run as real subprocesses (``python -m stages.<name>``) in a temporary project folder that
holds the repository's params.yaml and suite, with tiny contract-shaped inputs built here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from imgpipe.errors import PipelineError
from imgpipe.validate.suite import load_suite, run_suite

from factories import class_images, split_frame, write_labels, write_preprocessed, write_store

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["a", "b", "c"]


def project(tmp_path: Path, **overrides) -> Path:
    """A folder with params.yaml (sections overridden per key) and the expectation suite."""
    root = tmp_path / "project"
    (root / "expectations").mkdir(parents=True)
    shutil.copy(ROOT / "expectations" / "image_dataset.json", root / "expectations")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def run_stage(root: Path, name: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TQDM_DISABLE": "1", "GX_ANALYTICS_ENABLED": "false",
           "HOME": str(root)}
    return subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_one_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def labelled_inputs(root: Path, size: int = 12, n_per_class: int = 10) -> None:
    images, y = class_images(n_per_class, len(CLASSES), size=size)
    ids = [f"img/{i:03d}.png" for i in range(len(images))]
    write_preprocessed(root / "data" / "preprocessed", images, ids)
    write_labels(root / "data" / "labels", ids, list(y), CLASSES)


def augmented_inputs(root: Path, size: int) -> Path:
    """A preprocessed pixel store and the augment stage's index of it (the real augment build)."""
    from imgpipe.augment import build
    from imgpipe.params.augment import AugmentParams

    frames, images = [], []
    for split, n, seed in (("train", 8, 0), ("val", 3, 1), ("test", 3, 2)):
        x, y = class_images(n, len(CLASSES), size=size, seed=seed)
        images.append(x)
        frames.append((split, y))
    x = np.concatenate(images)
    shard, offset, _ = write_store(root / "data" / "preprocessed", x)
    splits = [split for split, y in frames for _ in y]
    labels = np.concatenate([y for _, y in frames])
    dataset = split_frame([f"{s}/{i}.png" for i, s in enumerate(splits)], labels, splits, shard, offset)
    aug = root / "data" / "augmented"
    aug.mkdir(parents=True)
    build(dataset, root / "data" / "preprocessed", aug, AugmentParams(), CLASSES)
    return aug


# -- the GX suite a person edits -------------------------------------------------------------------

def _suite_with(extra: object) -> dict:
    suite = load_suite(ROOT / "expectations" / "image_dataset.json")
    # The first 11 expectations (the images batch's originals), so the bad one is number 11.
    return {**suite, "expectations": [*suite["expectations"][:11], extra]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("expect_column_values_to_not_be_null", r"expectation 11 is a str, not an object"),
        ({"type": "expect_column_values_to_be_unique_typo", "kwargs": {"column": "item_id"}},
         r"expectation 11 \(expect_column_values_to_be_unique_typo on item_id\): unknown expectation type"),
        ({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "label", "value_set": {"$PARAMETER": "clases"}}},
         r"expectation 11 .*unknown \$PARAMETER 'clases'"),
        ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "lable"}},
         r"expectation 11 \(expect_column_values_to_not_be_null on lable\): no column 'lable'"),
    ],
)
def test_a_suite_that_does_not_run_as_written_is_refused_naming_the_expectation(tmp_path, extra, message):
    suite_path = tmp_path / "suite.json"
    suite_path.write_text(json.dumps(_suite_with(extra)))
    import pandas as pd

    frame = pd.DataFrame({"item_id": ["a.png"], "label": ["a"], "label_index": [0], "pixel_sha256": ["0" * 64],
                          "orig_width": [1], "orig_height": [1], "source_split": [""], "std_max": [1.0],
                          "phash": ["0" * 16]})
    with pytest.raises(PipelineError, match=message):
        run_suite(frame, load_suite(suite_path), {"classes": CLASSES, "max_label_index": 2}, suite_path)


def test_validate_stage_with_a_misspelled_column_fails_in_one_line(tmp_path):
    root = project(tmp_path)
    labelled_inputs(root)
    suite_path = root / "expectations" / "image_dataset.json"
    suite_path.write_text(json.dumps(_suite_with({"type": "expect_column_values_to_not_be_null",
                                                  "kwargs": {"column": "lable"}})))
    proc = run_stage(root, "validate")
    assert_one_line(proc, "validate failed: expectations/image_dataset.json: expectation 11", "no column 'lable'")
    assert not (root / "data" / "validated").exists()


# -- corrupt intermediate files --------------------------------------------------------------------

def test_truncated_classes_json_names_the_file_and_the_stage_to_rebuild(tmp_path):
    root = project(tmp_path)
    labelled_inputs(root)
    classes = root / "data" / "labels" / "classes.json"
    classes.write_text(classes.read_text()[:9])
    proc = run_stage(root, "validate")
    assert_one_line(proc, "validate failed: data/labels/classes.json: corrupt or truncated",
                    "dvc repro -f labels")


def test_corrupt_manifest_names_the_file(tmp_path):
    root = project(tmp_path)
    labelled_inputs(root)
    (root / "data" / "preprocessed" / "manifest.parquet").write_bytes(b"PAR1 not really")
    proc = run_stage(root, "validate")
    assert_one_line(proc, "data/preprocessed/manifest.parquet: corrupt or truncated", "dvc repro -f preprocess")


def test_junk_model_file_names_the_file(tmp_path):
    root = project(tmp_path)
    augmented_inputs(root, size=32)
    (root / "models").mkdir()
    (root / "models" / "model.pt").write_bytes(b"definitely not a checkpoint")
    proc = run_stage(root, "evaluate")
    assert_one_line(proc, "evaluate failed: models/model.pt: not a model checkpoint", "dvc repro -f train")


def test_a_checkpoint_missing_keys_is_named(tmp_path):
    import torch

    root = project(tmp_path)
    augmented_inputs(root, size=32)
    (root / "models").mkdir()
    torch.save({"weights": torch.zeros(2)}, root / "models" / "model.pt")
    proc = run_stage(root, "evaluate")
    assert_one_line(proc, "models/model.pt: not a model checkpoint (missing arch", "dvc repro -f train")


# -- a params combination the model cannot take ----------------------------------------------------

def test_lenet_on_8x8_images_is_one_line_naming_the_params(tmp_path):
    root = project(tmp_path, **{"train.model": "lenet", "train.epochs": 1, "preprocess.size": [8, 8]})
    augmented_inputs(root, size=8)
    proc = run_stage(root, "train")
    assert_one_line(proc, "train failed: train.model=lenet:", "16x16", "preprocess.size")
    assert not (root / "models" / "model.pt").exists()
