"""The cleaning-check loop (imgpipe.validate.checks.loop): it runs any registered check without
knowing it, merges what the checks say, and gives the same bytes whatever the caller's threads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from imgpipe.io import read_parquet, write_parquet
from imgpipe.params.validate import ValidateParams
from imgpipe.validate.checks import registered_checks
from imgpipe.validate.checks.base import (
    REGISTRY,
    Check,
    CheckContext,
    CheckResult,
    findings_frame,
    register,
)
from imgpipe.validate.checks.loop import CHECK_THREADS, run_checks
from imgpipe.validate.suite import load_suite
from imgpipe.validate.validation import join_tables, validate_dataset

from factories import class_images, write_labels, write_preprocessed

SUITE = load_suite("expectations/image_dataset.json")
CLASSES = ["a", "b", "c"]
SPEC = {"height": 12, "width": 12, "channels": 3}


def _run(tmp_path, **cfg):
    images, y = class_images(20, 3, size=12)
    images[[5, 40]] = 128  # flat images: blank, quarantined by the gate
    images[33] = 90 + (np.arange(12)[:, None, None] % 2)  # near-constant, passes the gate
    ids = [f"img/{i:03d}.png" for i in range(len(images))]
    manifest = write_preprocessed(tmp_path / "pre", images, ids)
    table = write_labels(tmp_path / "lab", ids, list(y), CLASSES)
    by_id = dict(zip(ids, images, strict=True))

    def load(rows: pd.DataFrame) -> np.ndarray:
        return np.stack([by_id[i] for i in rows["item_id"]])

    rejects = manifest.iloc[:0][["item_id", "source_path"]].assign(reason="")
    return validate_dataset(
        manifest, table, read_parquet(tmp_path / "lab" / "issues.parquet"), CLASSES, rejects, SUITE,
        ValidateParams(**{"max_quarantine_fraction": 0.5, **cfg}), load_pixels=load, image_spec=SPEC,
        configured=SPEC, tables={"boxes": pd.DataFrame({"item_id": ids[:2]})})


class _Probe(Check):
    """A check the loop has never heard of: it quarantines one image, drops another, flags a
    third, ties two images to one split, and records the BLAS threads it ran under."""

    name = "probe"
    section = "outliers"  # any existing section: the probe has no params of its own
    writes = ("probe",)
    order = 55
    needs_pixels = True
    seen: list = []

    def run(self, ctx: CheckContext) -> CheckResult:
        type(self).seen.append({
            "blas": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"],
            "pixels": ctx.pixels().shape, "boxes": len(ctx.tables.get("boxes", [])),
        })
        pos = np.array([0, 1, 2])
        found = findings_frame(ctx.rows, pos, "probe", [0.1, 0.2, 0.3], ["quarantined", "dropped", "flagged"],
                               detail="planted")
        return CheckResult(findings=found, counters={"probe_hits": 3}, detail={"planted": 3},
                           same_split=(np.arange(10, 16), np.arange(30, 36)))


@pytest.fixture
def probe():
    _Probe.seen = []
    register(_Probe)
    yield _Probe
    del REGISTRY["probe"]


def test_the_loop_runs_a_check_it_does_not_know(tmp_path, probe):
    assert "probe" in [c.name for c in registered_checks()]
    with threadpool_limits(limits=1):  # the caller's count must not leak into the checks
        result = _run(tmp_path, label_issues={"enabled": False})  # the slow one; tested below
    (seen,) = probe.seen
    assert seen["blas"], "numpy's BLAS pool is reported: the thread promise is checked, not skipped"
    assert set(seen["blas"]) == {CHECK_THREADS}
    assert seen["pixels"] == (58, 12, 12, 3) and seen["boxes"] == 2
    review = result.review
    mine = review[review["check"] == "probe"]
    assert mine["item_id"].tolist() == ["img/000.png", "img/001.png", "img/002.png"]
    assert result.quarantine.set_index("item_id").loc["img/000.png", "reasons"] == "probe: planted"
    assert "img/001.png" not in set(result.dataset["item_id"])  # dropped
    assert "img/002.png" in set(result.dataset["item_id"])  # flagged, kept
    assert result.quality["probe_hits"] == 3 and result.detail["probe"] == {"planted": 3}
    # Rows 10.. and 30.. of what passed the gate (img/011.., img/031..: img/005 was quarantined)
    # share a split, pair by pair.
    split = result.dataset.set_index("item_id")["split"]
    assert all(split[f"img/{i:03d}.png"] == split[f"img/{i + 20:03d}.png"] for i in range(11, 17))
    # Review order: the gate's rows, then each check's rows in its ``order``.
    rank = {"expectation": -1, "label_import": -1}
    rank.update({w: c.order for c in registered_checks() for w in c.writes})
    ranks = [rank[c] for c in review["check"]]
    assert ranks == sorted(ranks) and {-1, 50, 55} <= set(ranks)


def test_checks_that_are_off_or_lack_pixels_do_not_run(tmp_path, probe):
    result = _run(tmp_path, label_issues={"enabled": False}, near_duplicates={"enabled": False})
    assert "label_issues" not in result.quality and "near_duplicate_groups" not in result.quality
    assert "label_model_oos_accuracy" not in result.detail
    assert result.quality["exact_duplicate_groups"] == 0  # exact duplicates have no off switch


def test_same_bytes_with_one_and_two_caller_threads(tmp_path):
    """The promise of CHECK_THREADS: the checks' output does not depend on the caller's thread count
    (the label model's BLAS sums and the LSH projections are where it would show)."""
    images, y = class_images(20, 3, size=12)
    images[[5, 40]] = 128  # flat
    ids = [f"img/{i:03d}.png" for i in range(len(images))]
    rows = join_tables(write_preprocessed(tmp_path / "pre", images, ids), write_labels(tmp_path / "lab", ids, list(y),
                                                                                       CLASSES))
    rows["label_index"] = rows["label_index"].astype("int64")
    out = {}
    for threads in (1, 2):
        ctx = CheckContext(rows, CLASSES, ValidateParams(), pixel_loader=lambda pos: images[pos])
        with threadpool_limits(limits=threads):
            found = run_checks(ctx)
        assert found.ran == ["duplicates", "ood", "outliers", "label_issues"]
        write_parquet(found.findings, tmp_path / f"findings{threads}.parquet")
        out[threads] = ((tmp_path / f"findings{threads}.parquet").read_bytes(), found.groups.tobytes(),
                        found.counters, found.detail)
    assert out[1] == out[2]


def test_two_checks_counting_the_same_key_is_an_error(tmp_path, probe):
    class Twin(_Probe):
        name = "twin"

    register(Twin)
    try:
        with pytest.raises(ValueError, match="probe and twin both count 'probe_hits'"):
            _run(tmp_path)
    finally:
        del REGISTRY["twin"]


def test_a_check_with_an_unknown_decision_is_named():
    class Sloppy(_Probe):
        name = "sloppy"
        needs_pixels = False

        def run(self, ctx):
            return CheckResult(findings=findings_frame(ctx.rows, np.array([0]), "sloppy", 1.0, "removed"))

    rows = pd.DataFrame({"item_id": ["a"], "source_path": ["a"]})
    with pytest.raises(ValueError, match=r"cleaning check sloppy: decision \['removed'\] is not one of"):
        run_checks(CheckContext(rows, [], ValidateParams()), [Sloppy()])
