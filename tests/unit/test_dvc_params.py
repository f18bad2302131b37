"""Each stage's ``params:`` in dvc.yaml track every param its script reads.

A stage script reads a section with ``load("<section>", Model)``. Its own section (and any
other section it reads whole) must be tracked whole in ``dvc.yaml``; a section it reads only a
few keys of is listed in :data:`PARTIAL` with those keys, and each of them must be tracked.
So a param a stage reads can never change without DVC rerunning that stage, and a key added
with ``dvc exp run -S +train.x=1`` reruns train, whose strict loader then refuses it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

# (stage, section) -> the only keys of that section the stage reads (why: see dvc.yaml comments).
PARTIAL = {
    ("labels", "download"): {"download.s3_endpoint_url", "download.retries", "download.timeout_s",
                             "download.cache_dir"},
    ("train", "download"): {"download.s3_endpoint_url", "download.retries", "download.timeout_s",
                            "download.cache_dir"},
    ("validate", "preprocess"): {"preprocess.size", "preprocess.mode"},
    ("preprocess", "labels"): {"labels.task", "labels.detection.crops",
                                "labels.detection.crop_padding", "labels.detection.cache_dir"},
    ("augment", "download"): {"download.source"},
    ("train", "preprocess"): {"preprocess.mode", "preprocess.size", "preprocess.resize", "preprocess.background",
                            "preprocess.fast_jpeg_decode"},
}
INTERPOLATED = {"paths"}  # dvc.yaml interpolates ${paths.*} into deps and outs


def sections_read(stage: str) -> set[str]:
    """Sections the stage script loads: every ``load("<name>", ...)`` call in ``stages/<stage>.py``."""
    tree = ast.parse((ROOT / "stages" / f"{stage}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load"
                and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(node.args[0].value)
    return found


def leaf_keys(prefix: str, value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(leaf_keys(f"{prefix}.{k}", v) for k, v in value.items())) if value else {prefix}
    return {prefix}


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_stage_tracks_every_param_it_reads(stage):
    tracked = set(DVC_YAML["stages"][stage].get("params", []))
    read = sections_read(stage)
    # Else a stage that loads its params some other way would pass with nothing checked.
    assert "paths" in read and (stage not in PARAMS or stage in read), (
        f"stages/{stage}.py: no load(\"paths\"/\"{stage}\", ...) call found; sections_read() cannot see its params")
    for section in sorted(read - INTERPOLATED):
        partial = PARTIAL.get((stage, section))
        if partial is None:
            assert section in tracked, (
                f"stages/{stage}.py reads params section {section!r}; track it whole in dvc.yaml "
                f"(params: - {section}) or list the keys it reads in PARTIAL")
        else:
            missing = partial - tracked
            assert not missing, f"dvc.yaml stage {stage} does not track {sorted(missing)}"


@pytest.mark.parametrize("stage", sorted(DVC_YAML["stages"]))
def test_tracked_params_exist(stage):
    known = set().union(*(leaf_keys(k, v) for k, v in PARAMS.items())) | set(PARAMS)
    for entry in DVC_YAML["stages"][stage].get("params", []):
        key = entry if isinstance(entry, str) else next(iter(entry))
        assert key in known or any(k.startswith(key + ".") for k in known), f"{stage}: {key} is not in params.yaml"


def test_partial_keys_exist():
    known = set().union(*(leaf_keys(k, v) for k, v in PARAMS.items()))
    for (stage, _), keys in PARTIAL.items():
        assert keys <= known, f"{stage}: {sorted(keys - known)} not in params.yaml"
