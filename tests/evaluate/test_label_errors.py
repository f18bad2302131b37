"""Suspected test-label errors by confident learning on the network's test probabilities:
planted label swaps are found and ranked first, a clean set raises none, same bytes twice."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.evaluate.label_errors import COLUMNS, label_error_table, label_errors_png

CLASSES = ["cat", "dog", "frog", "ship"]


def _probs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A network that is right and fairly sure on every image: true labels and its probabilities."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % len(CLASSES)
    logits = rng.normal(0, 1, (n, len(CLASSES)))
    logits[np.arange(n), truth] += 8
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return truth, probs


def _items(n: int) -> pd.DataFrame:
    ids = [f"test/img{i:03d}.png" for i in range(n)]
    return pd.DataFrame({"item_id": ids, "source_path": ids})


def test_planted_swaps_are_found_first_with_the_true_label_suggested():
    truth, probs = _probs(200)
    given = truth.copy()
    swapped = np.array([3, 17, 40, 41, 99, 150, 151, 199])
    given[swapped] = (truth[swapped] + 1) % len(CLASSES)
    table = label_error_table(_items(200), given, probs, CLASSES)
    assert list(table.columns) == list(COLUMNS)
    assert set(table["item_id"].head(len(swapped))) == {f"test/img{i:03d}.png" for i in swapped}
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table["label_score"].is_monotonic_increasing
    head = table.head(len(swapped)).set_index("item_id")
    for i in swapped:
        assert head.loc[f"test/img{i:03d}.png", "suggested_label"] == CLASSES[truth[i]]
        assert head.loc[f"test/img{i:03d}.png", "label"] == CLASSES[given[i]]


def test_a_clean_test_split_raises_no_suspect():
    truth, probs = _probs(200, seed=1)
    assert len(label_error_table(_items(200), truth, probs, CLASSES)) == 0


def test_tiny_or_single_class_splits_do_not_crash():
    truth, probs = _probs(8)
    assert len(label_error_table(_items(1), truth[:1], probs[:1], CLASSES)) == 0
    assert len(label_error_table(_items(8), np.zeros(8, np.int64), probs, CLASSES)) <= 8


def test_csv_and_sheet_bytes_are_deterministic(tmp_path):
    truth, probs = _probs(60)
    given = truth.copy()
    given[[5, 6]] = (truth[[5, 6]] + 2) % len(CLASSES)
    images = np.random.default_rng(2).integers(0, 256, (60, 16, 16, 3), dtype=np.uint8)
    outs = []
    for k in range(2):
        table = label_error_table(_items(60), given, probs, CLASSES)
        table.to_csv(tmp_path / f"e{k}.csv", index=False, lineterminator="\n")
        label_errors_png(table, images, _items(60), tmp_path / f"e{k}.png")
        outs.append(((tmp_path / f"e{k}.csv").read_bytes(), (tmp_path / f"e{k}.png").read_bytes()))
    assert outs[0] == outs[1] and outs[0][1][:8] == b"\x89PNG\r\n\x1a\n"
    assert b"test/img005.png" in outs[0][0]
