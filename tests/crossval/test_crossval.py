"""The crossval stage on tiny generated data: K fold models of the real network find planted label
swaps, a clean set gives (almost) no suspects by cleanlab's count, copies never train the model that
predicts their original, off writes empty outputs, a rerun writes the same bytes (one thread), both
rankings (``crossval.rank_by``), the folds read a pixel or jpeg store by index with the bytes of an
in-memory copy, and a fold trains finite and deterministic under forced fp32 and forced bf16."""

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
                    copies: int = 0, store: str = "pixels") -> Path:
    """augment's outputs as its loaders read them: a preprocessed store (``pixels`` or ``jpeg``; the
    real shard writers), per-split indexes into it (copies included), meta and norm."""
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
    shard, offset, _ = write_store(preprocessed, np.concatenate([p[1] for p in parts]), store)
    start = 0
    for split, x, y, items in parts:
        rows = slice(start, start + len(x))
        start += len(x)
        items.assign(label_index=y.astype(np.int64), pixels_in="preprocessed", shard=shard[rows],
                     shard_offset=offset[rows]).to_parquet(out / f"{split}_items.parquet", index=False)
    (out / "norm.json").write_text(json.dumps({"mean": [0.2] * 3, "std": [0.3] * 3}))
    (out / "meta.json").write_text(json.dumps({"classes": CLASSES, "height": 16, "width": 16, "channels": 3,
                                               "hflip": True, "store": store,
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
    assert metrics["rank_by"] == "self_confidence" and metrics["cleanlab_found"] >= len(swaps)
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
    table = pd.read_csv(cv.LABEL_ERRORS_FILE, dtype={"item_id": str})
    metrics = json.loads(cv.METRICS_FILE.read_text())
    # rank_by self_confidence: a review queue as long as the cap (the images the network gets wrong
    # here), while cleanlab's estimate of the wrong labels says the set is clean
    assert len(table) <= int(ON.max_flag_fraction * 150) and metrics["cleanlab_found"] <= 2
    probs = pd.read_parquet(cv.PROBABILITIES_FILE)
    assert len(probs) == 150  # originals only: the 120 flipped copies are trained on, not predicted
    wrong = probs[[f"p_{c}" for c in CLASSES]].to_numpy().argmax(1) != [CLASSES.index(c) for c in probs["label"]]
    assert set(table["item_id"]) <= set(probs["item_id"][wrong])
    # rank_by cleanlab (today's list) on the same probabilities: at most 2 of 150 correct labels
    labels = np.array([CLASSES.index(c) for c in probs["label"]])
    old, _ = cv.suspects_table(probs, labels, probs[[f"p_{c}" for c in CLASSES]].to_numpy(), CLASSES,
                               probs["fold"].to_numpy(), ON.max_flag_fraction, "cleanlab")
    assert len(old) <= 2
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


def _probs_and_labels():
    """Six images of three classes: rows 1, 3 and 4 are given a label the network does not
    choose (row 4 the least self-confident), row 5 is right but unsure."""
    probs = np.array([[0.90, 0.05, 0.05], [0.10, 0.80, 0.10], [0.05, 0.05, 0.90],
                      [0.30, 0.60, 0.10], [0.05, 0.90, 0.05], [0.40, 0.35, 0.25]], dtype=np.float32)
    labels = np.array([0, 0, 2, 0, 2, 0])
    return probs, labels


def test_rank_by_self_confidence_lists_every_disagreement_least_self_confident_first():
    probs, labels = _probs_and_labels()
    assert cv.rank_suspects(labels, probs, "self_confidence").tolist() == [4, 1, 3]
    from imgpipe.evaluate.label_errors import rank_label_errors

    assert cv.rank_suspects(labels, probs, "cleanlab").tolist() == rank_label_errors(labels, probs).tolist()
    with pytest.raises(ValueError, match="rank_by"):
        cv.rank_suspects(labels, probs, "margin")
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "source_path": [f"s{k}" for k in range(6)],
                          "split": ["train"] * 4 + ["val"] * 2})
    table, found = cv.suspects_table(items, labels, probs, ["a", "b", "c"], np.arange(6) % 2, 2 / 6,
                                     "self_confidence")
    assert found == 3 and table["item_id"].tolist() == ["i4", "i1"]  # the cap: 2 of the 3
    assert table["rank"].tolist() == [1, 2] and table["suggested_label"].tolist() == ["b", "b"]
    assert table.columns.tolist() == cv.error_columns()


@pytest.mark.parametrize("store", ["pixels", "jpeg"])
def test_folds_read_the_store_by_index_and_give_the_bytes_of_an_in_memory_copy(tmp_path, store):
    from imgpipe.contracts import load_augmented_meta
    from imgpipe.storedsplit import StoredImages

    augmented = write_augmented(tmp_path, n_train=48, n_val=12, store=store)
    x, y, items = cv.load_training_rows(augmented, include_val=True)
    assert isinstance(x, StoredImages) and len(x) == len(y) == len(items) == 60  # lazy: no pixels read
    pixels = np.asarray(x)
    assert (x[np.array([59, 3])] == pixels[[59, 3]]).all()
    meta, norm = load_augmented_meta(augmented)
    folds = cv.assign_folds(items["item_id"], y, 2, 0)
    cfg = CrossvalParams(enabled=True, folds=2, epochs=1)
    train = TRAIN.model_copy(update={"batch_size": 8})  # several batches: a jpeg store decodes them in a worker
    stored, _ = cv.out_of_fold_probabilities(x, y, folds, np.ones(60, bool), meta, norm, train, cfg)
    in_memory, _ = cv.out_of_fold_probabilities(pixels, y, folds, np.ones(60, bool), meta, norm, train, cfg)
    assert stored.tobytes() == in_memory.tobytes()


@pytest.mark.parametrize("force", ["0", "1"])
def test_a_fold_trains_under_forced_fp32_and_bf16_finite_and_deterministic(tmp_path, monkeypatch, force):
    from imgpipe.contracts import load_augmented_meta

    monkeypatch.setenv("IMGPIPE_FORCE_BF16", force)
    augmented = write_augmented(tmp_path, n_train=48, n_val=12)
    x, y, items = cv.load_training_rows(augmented, include_val=True)
    meta, norm = load_augmented_meta(augmented)
    folds = cv.assign_folds(items["item_id"], y, 2, 0)
    cfg = CrossvalParams(enabled=True, folds=2, epochs=1)
    train = TRAIN.model_copy(update={"bf16": "auto"})  # the environment decides, as in CI
    runs = [cv.out_of_fold_probabilities(x, y, folds, folds == 0, meta, norm, train, cfg) for _ in range(2)]
    (probs, records), (again, _) = runs
    assert [r["fold"] for r in records] == [0]  # one fold model: only fold 0 is asked for
    precision = records[0]["precision"]
    assert precision == "fp32" if force == "0" else "bf16" in precision
    held = probs[folds == 0]
    assert np.isfinite(held).all() and np.allclose(held.sum(1), 1, atol=1e-3)
    assert probs.tobytes() == again.tobytes()
