"""Every headline figure against scikit-learn on a small known case; ECE against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from imgpipe.evaluate.calibration import expected_calibration_error, reliability_table
from imgpipe.evaluate.metrics import confusion_matrix, score, top_k_accuracy

CLASSES = [f"c{i}" for i in range(7)]


def _case(seed: int = 0, n: int = 200, k: int = 7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    y[y == 6] = 5  # class c6 has no test image: macro averages still count it
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += rng.uniform(0, 3, n)  # right more often than not
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_headline_matches_scikit_learn():
    y, probs = _case()
    pred = probs.argmax(1)
    labels = list(range(len(CLASSES)))
    headline, table = score(y, probs, CLASSES)
    assert headline["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        assert headline[f"precision_{avg}"] == pytest.approx(p, abs=1e-6)
        assert headline[f"recall_{avg}"] == pytest.approx(r, abs=1e-6)
        assert headline[f"f1_{avg}"] == pytest.approx(f, abs=1e-6)
    assert headline["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=5, labels=labels), abs=1e-6)
    assert headline["test_images"] == len(y)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    assert table["class"].tolist() == CLASSES
    np.testing.assert_allclose(table["precision"], p, atol=1e-6)
    np.testing.assert_allclose(table["recall"], r, atol=1e-6)
    np.testing.assert_allclose(table["f1"], f, atol=1e-6)
    assert table["support"].tolist() == s.tolist()
    np.testing.assert_array_equal(confusion_matrix(y, pred, 7), skm.confusion_matrix(y, pred, labels=labels))


def test_top5_only_beyond_five_classes():
    y, probs = _case(k=5)
    headline, _ = score(y, probs, CLASSES[:5])
    assert "top5_accuracy" not in headline
    assert top_k_accuracy(y, probs, 5) == 1.0


def test_ece_by_hand():
    # 15 bins of width 1/15, right-closed. By hand:
    #   0.95 (right)              -> bin 14: |1 - 0.95|           = 0.05
    #   0.90 (wrong), 0.93 (right) -> bin 13: |0.5 - 0.915| x 2    = 0.83
    #   0.62 (right)              -> bin 9:  |1 - 0.62|           = 0.38
    #   0.55 (right)              -> bin 8:  |1 - 0.55|           = 0.45
    #   0.35 (wrong)              -> bin 5:  |0 - 0.35|           = 0.35
    # ECE = (0.05 + 0.83 + 0.38 + 0.45 + 0.35) / 6 = 2.06 / 6
    conf = np.array([0.95, 0.90, 0.93, 0.62, 0.55, 0.35])
    correct = np.array([1, 0, 1, 1, 1, 0], bool)
    assert expected_calibration_error(conf, correct, 15) == pytest.approx(2.06 / 6, abs=1e-12)
    table = reliability_table(conf, correct, 15)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 2, 1]
    assert table.loc[13, "accuracy"] == 0.5
    assert table.loc[13, "confidence"] == pytest.approx(0.915)


def test_ece_of_a_perfectly_calibrated_set_is_zero_and_edges_are_right_closed():
    # 4 images at confidence 0.75, 3 right: accuracy equals confidence.
    assert expected_calibration_error(np.full(4, 0.75), np.array([1, 1, 1, 0], bool), 4) == 0.0
    # 1.0 lands in the last bin, 0.5 in the bin it closes (0.25, 0.5].
    table = reliability_table(np.array([1.0, 0.5]), np.array([1, 0], bool), 4)
    assert table["count"].tolist() == [0, 1, 0, 1]


def test_ece_matches_scikit_learn_calibration_curve():
    y, probs = _case(seed=3, n=500)
    conf, correct = probs.max(1), probs.argmax(1) == y
    table = reliability_table(conf, correct, 15)
    from sklearn.calibration import calibration_curve

    frac, mean = calibration_curve(correct, conf, n_bins=15, strategy="uniform")
    filled = table[table["count"] > 0]
    np.testing.assert_allclose(filled["accuracy"], frac, atol=1e-9)
    np.testing.assert_allclose(filled["confidence"], mean, atol=1e-9)
