"""Calibration: expected calibration error and the reliability-diagram table.

Confidence is the top softmax probability. The unit interval is cut into ``bins`` equal-width
bins, right-closed (``(0, 1/M], (1/M, 2/M], ...``, as in Guo et al., 2017, "On Calibration of
Modern Neural Networks"); ECE = sum over bins of (images in bin / all images) x
|accuracy in bin - mean confidence in bin|.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RELIABILITY_COLUMNS = ("bin", "lower", "upper", "count", "confidence", "accuracy")


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Right-closed bin of each confidence (0 goes to the first bin); the same assignment as
    scikit-learn's ``calibration_curve(strategy="uniform")``."""
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.searchsorted(inner_edges, np.asarray(confidence, float), side="left")


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """One row per bin: edges, image count, mean confidence and accuracy (0 for an empty bin)."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, float)
    idx = bin_index(confidence, bins)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=confidence, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    safe = np.maximum(count, 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({
        "bin": np.arange(bins), "lower": edges[:-1], "upper": edges[1:], "count": count,
        "confidence": conf_sum / safe, "accuracy": acc_sum / safe,
    })


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    table = reliability_table(confidence, correct, bins)
    n = table["count"].sum()
    if not n:
        return 0.0
    gap = (table["accuracy"] - table["confidence"]).abs()
    return float((table["count"] / n * gap).sum())
