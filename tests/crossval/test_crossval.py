"""The crossval stage on tiny generated data: K fold models of the real network find planted label
swaps, a clean set gives (almost) no suspects, copies never train the model that predicts their
original, off writes empty outputs, and a rerun writes the same bytes (one thread)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from imgpipe import crossval as cv
from imgpipe.params.crossval import CrossvalParams
from imgpipe.params.train import TrainParams

CLASSES = ["c0", "c1", "c2"]
TRAIN = TrainParams(model="lenet", batch_size=32, threads=1, seed=3, bf16=False)
ON = CrossvalParams(enabled=True, folds=3, epochs=4, max_flag_fraction=0.1)


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each class a bright quadrant in its own colour on noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    x = rng.integers(0, 60, (n, 16, 16, 3))
    for i, c in enumerate(y):
        x[i, (c % 2) * 8 : (c % 2) * 8 + 8, (c // 2) * 8 : (c // 2) * 8 + 8, c] += 180
    return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)


def write_augmented(root: Path, n_train: int = 120, n_val: int = 30, swaps: tuple[int, ...] = (),
                    copies: int = 0) -> Path:
    """augment's outputs as its loaders read them: a preprocessed pixel store (the real shard
    writers), per-split indexes into it (copies included), meta and norm."""
    from factories import write_store

    out = root / "data" / "augmented"
    out.mkdir(parents=True)
    parts = []
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1), ("test", 6, 2)):
        x, y = images(n, seed)
        if split == "train":
            y[list(swaps)] = (y[list(swaps)] + 1) % len(CLASSES)
        ids = [f"{split}/{i:04d}.png" for i in range(n)]
        items = pd.DataFrame({"item_id": ids, "source_path": ids, "copy": 0})
        if split == "train" and copies:
            x = np.concatenate([x] + [np.flip(x, 2)] * copies)
            y = np.concatenate([y] * (1 + copies))
            items = pd.concat([items.assign(copy=k) for k in range(1 + copies)], ignore_index=True)
        parts.append((split, x, y, items))
    preprocessed = root / "data" / "preprocessed"
    shard, offset, _ = write_store(preprocessed, np.concatenate([p[1] for p in parts]))
    start = 0
    for split, x, y, items in parts:
        rows = slice(start, start + len(x))
        start += len(x)
        items.assign(label_index=y.astype(np.int64), pixels_in="preprocessed", shard=shard[rows],
                     shard_offset=offset[rows]).to_parquet(out / f"{split}_items.parquet", index=False)
    (out / "norm.json").write_text(json.dumps({"mean": [0.2] * 3, "std": [0.3] * 3}))
    (out / "meta.json").write_text(json.dumps({"classes": CLASSES, "height": 16, "width": 16, "channels": 3,
                                               "hflip": True, "store": "pixels",
                                               "preprocessed": preprocessed.as_posix()}))
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_folds_are_stratified_even_and_independent_of_row_order():
    ids = [f"img{i:03d}" for i in range(90)]
    labels = np.arange(90) % 3
    folds = cv.assign_folds(ids, labels, 5, seed=0)
    assert np.bincount(folds).tolist() == [18] * 5
    for c in range(3):
        assert np.bincount(folds[labels == c], minlength=5).tolist() == [6] * 5
    order = np.random.default_rng(1).permutation(90)
    again = cv.assign_folds([ids[i] for i in order], labels[order], 5, seed=0)
    assert (again == folds[order]).all()
    assert (cv.assign_folds(ids, labels, 5, seed=1) != folds).any()


def test_planted_swaps_are_found_and_ranked_first(tmp_path, monkeypatch):
    swaps = (4, 31, 57, 88, 110)
    augmented = write_augmented(tmp_path, swaps=swaps)
    monkeypatch.chdir(tmp_path)
    summary = cv.crossval_label_errors(augmented, ON, TRAIN)
    table = pd.read_csv(cv.LABEL_ERRORS_FILE, dtype={"item_id": str})
    assert list(table.columns) == cv.error_columns()
    assert set(table["item_id"].head(len(swaps))) == {f"train/{i:04d}.png" for i in swaps}, summary
    head = table.head(len(swaps))
    truth = {f"train/{i:04d}.png": CLASSES[i % 3] for i in swaps}
    assert all(truth[i] == s for i, s in zip(head["item_id"], head["suggested_label"], strict=True))
    assert len(table) <= int(0.1 * 150)
    metrics = json.loads(cv.METRICS_FILE.read_text())
    assert metrics["enabled"] and metrics["images"] == 150 and metrics["suspected_label_errors"] == len(table)
    probs = pd.read_parquet(cv.PROBABILITIES_FILE)
    assert len(probs) == 150 and set(probs["split"]) == {"train", "val"}
    assert np.allclose(probs[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1, atol=1e-4)
    assert (cv.PLOTS_DIR / cv.SHEET_FILE).stat().st_size > 1000
    rows = cv.review_rows(table)
    assert set(rows["check"]) == {cv.CHECK} and rows["detail"].str.startswith("cross-validated network").all()


def test_a_clean_set_gives_few_suspects_and_the_same_bytes_twice(tmp_path, monkeypatch):
    augmented = write_augmented(tmp_path, copies=1)
    monkeypatch.chdir(tmp_path)
    cv.crossval_label_errors(augmented, ON, TRAIN)
    first = {p: p.read_bytes() for p in (cv.LABEL_ERRORS_FILE, cv.PROBABILITIES_FILE, cv.METRICS_FILE,
                                         cv.PLOTS_DIR / cv.SHEET_FILE)}
    table = pd.read_csv(cv.LABEL_ERRORS_FILE)
    assert len(table) <= 2  # of 150 correctly labelled images
    probs = pd.read_parquet(cv.PROBABILITIES_FILE)
    assert len(probs) == 150  # originals only: the 120 flipped copies are trained on, not predicted
    cv.crossval_label_errors(augmented, ON, TRAIN)
    assert all(p.read_bytes() == b for p, b in first.items())


def test_copies_go_with_their_original():
    ids = np.array([f"train/{i:04d}.png" for i in range(30)] * 2)
    labels = np.tile(np.arange(30) % 3, 2)
    original = np.arange(60) < 30
    fold_of = dict(zip(ids[original], cv.assign_folds(ids[original], labels[original], 3, 0), strict=True))
    folds = np.array([fold_of[i] for i in ids])
    assert (folds[:30] == folds[30:]).all()


def test_off_writes_empty_outputs_with_the_right_columns(tmp_path, monkeypatch):
    augmented = write_augmented(tmp_path, n_train=6, n_val=3)
    monkeypatch.chdir(tmp_path)
    summary = cv.crossval_label_errors(augmented, CrossvalParams(), TRAIN)
    assert "false" in summary["enabled"]
    assert pd.read_csv(cv.LABEL_ERRORS_FILE).columns.tolist() == cv.error_columns()
    assert pd.read_parquet(cv.PROBABILITIES_FILE).columns.tolist() == [
        "item_id", "source_path", "split", "fold", "label", "p_c0", "p_c1", "p_c2"]
    assert json.loads(cv.METRICS_FILE.read_text()) == {"enabled": False, "suspected_label_errors": 0}
    assert (cv.PLOTS_DIR / cv.SHEET_FILE).is_file()



def test_review_merges_the_suspects_with_source_crossval(tmp_path, monkeypatch):
    from imgpipe import review
    from imgpipe.contracts import REVIEW_COLUMNS
    from imgpipe.errors import PipelineError

    ids = [f"train/{i:04d}.png" for i in range(4)]
    table = pd.DataFrame({"rank": [1], "item_id": [ids[1]], "source_path": [ids[1]], "label": ["c0"],
                          "suggested_label": ["c2"], "label_score": [0.01], "suggested_score": [0.97],
                          "split": ["train"], "fold": [2]}, columns=cv.error_columns())
    monkeypatch.chdir(tmp_path)
    assert cv.crossval_review_rows() is None  # the stage has not run: nothing to merge
    with pytest.raises(PipelineError, match="not found; run `dvc repro crossval`"):
        cv.crossval_review_rows(Path("elsewhere.csv"))
    cv.write_csv(table, cv.LABEL_ERRORS_FILE)
    rows = cv.crossval_review_rows()
    assert rows["detail"].tolist() == ["cross-validated network (fold 3): given c0 (p=0.010), says c2 (p=0.970)"]
    validate = pd.DataFrame([{"item_id": ids[0], "source_path": ids[0], "check": "near_duplicate", "score": 0.9,
                              "decision": "flagged", "group_id": "g", "suggested_label": "", "suggested_score": 0.0,
                              "detail": "near_duplicate"}], columns=list(REVIEW_COLUMNS))
    labels = pd.DataFrame({"item_id": ids, "label": ["c0"] * 4})
    props = review.build_proposals(review.merge_findings(validate, None, rows), labels, ids, set(), True)
    assert [(p.image, p.data["check"], p.data["source"], p.label) for p in props] == [
        (ids[1], cv.CHECK, "crossval", "c2"), (ids[0], "near_duplicate", "validate", None)]
