"""Evaluation on the test split: accuracy, macro precision/recall/F1, per-class report, confusion data."""

from __future__ import annotations

import numpy as np
import pandas as pd


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> tuple[dict, dict]:
    """Return ``(headline metrics, per-class report)`` computed with scikit-learn."""
    from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    headline = {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "precision_macro": round(float(precision), 6),
        "recall_macro": round(float(recall), 6),
        "f1_macro": round(float(f1), 6),
        "test_images": int(len(y_true)),
    }
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    per_class = {
        name: {k: (round(float(v), 6) if k != "support" else int(v)) for k, v in report[name].items()}
        for name in classes
    }
    return headline, per_class


def prediction_rows(items: pd.DataFrame, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per test image: its item id and source path, then ``actual`` and ``predicted``
    (the columns DVC's ``confusion`` plot template reads)."""
    from imgpipe.contracts import ITEM_COLUMNS

    if len(items) != len(y_true):
        raise ValueError(f"{len(items)} item ids for {len(y_true)} test images")
    names = np.asarray(classes, dtype=object)
    rows = items[list(ITEM_COLUMNS)].reset_index(drop=True).copy()
    rows["actual"] = names[y_true]
    rows["predicted"] = names[y_pred]
    return rows
