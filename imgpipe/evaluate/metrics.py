"""Test-split scores from predicted probabilities: headline figures, a per-class table, confusion data.

Computed with numpy from the confusion matrix (scikit-learn is the reference the tests check
against, not a run-time dependency of the stage): precision, recall and F1 follow scikit-learn's
``zero_division=0`` convention, macro averages weigh every class of the frozen class list equally
(a class absent from the test split counts with recall 0), weighted averages weigh by support.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.evaluate.calibration import expected_calibration_error

TOP_K = 5
PER_CLASS_COLUMNS = ("class", "precision", "recall", "f1", "support")
DIGITS = 6


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64: the probabilities evaluate scores and predict writes."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[actual, predicted]``."""
    flat = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num), float), where=den > 0)


def per_class_scores(cm: np.ndarray) -> pd.DataFrame:
    tp = np.diag(cm).astype(float)
    precision = _ratio(tp, cm.sum(0).astype(float))
    recall = _ratio(tp, cm.sum(1).astype(float))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(1)})


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Share of images whose class is among the ``k`` highest probabilities (ties broken by index)."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(1).mean())


def score(y_true: np.ndarray, probs: np.ndarray, classes: list[str], ece_bins: int = 15) -> tuple[dict, pd.DataFrame]:
    """``(headline metrics, per-class table)`` for true labels and predicted probabilities ``(N, K)``."""
    y_true = np.asarray(y_true, np.int64)
    n_classes = len(classes)
    y_pred = probs.argmax(1)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    table = per_class_scores(cm)
    support = table["support"].to_numpy(float)
    weights = support / support.sum() if support.sum() else support
    headline = {"accuracy": float(np.trace(cm) / max(cm.sum(), 1))}
    for name in ("precision", "recall", "f1"):
        values = table[name].to_numpy()
        headline[f"{name}_macro"] = float(values.mean())
        headline[f"{name}_weighted"] = float((values * weights).sum())
    if n_classes > TOP_K:
        headline[f"top{TOP_K}_accuracy"] = top_k_accuracy(y_true, probs, TOP_K)
    headline["ece"] = expected_calibration_error(probs.max(1), y_pred == y_true, ece_bins)
    headline = {k: round(v, DIGITS) for k, v in headline.items()}
    headline["test_images"] = int(len(y_true))
    table = table.round(DIGITS)
    table.insert(0, "class", classes)
    return headline, table


def prediction_rows(items: pd.DataFrame, y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per test image: its item id and source path, ``actual`` and ``predicted`` (the
    columns DVC's ``confusion`` templates read) and the model's ``confidence`` in its prediction."""
    from imgpipe.contracts import ITEM_COLUMNS

    if len(items) != len(y_true):
        raise ValueError(f"{len(items)} item ids for {len(y_true)} test images")
    names = np.asarray(classes, dtype=object)
    predicted = probs.argmax(1)
    rows = items[list(ITEM_COLUMNS)].reset_index(drop=True).copy()
    rows["actual"] = names[np.asarray(y_true, np.int64)]
    rows["predicted"] = names[predicted]
    rows["confidence"] = probs[np.arange(len(probs)), predicted].round(DIGITS)
    return rows
