"""The error gallery: the test images the model got wrong with the most confidence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CAPTION_ID_CHARS = 22


def most_confidently_wrong(actual: np.ndarray, probs: np.ndarray, limit: int) -> np.ndarray:
    """Row indices of wrong predictions, highest confidence first (ties: lower row first)."""
    predicted = probs.argmax(1)
    wrong = np.flatnonzero(predicted != np.asarray(actual))
    confidence = probs[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:limit]


def _short(item_id: str) -> str:
    return item_id if len(item_id) <= CAPTION_ID_CHARS else "…" + item_id[-(CAPTION_ID_CHARS - 1):]


def captions(rows: Sequence[int], items: pd.DataFrame, actual: np.ndarray, probs: np.ndarray,
             classes: Sequence[str]) -> list[str]:
    """``item id`` / ``true: <class>`` / ``pred: <class> (<confidence>)`` per shown image."""
    out = []
    for row in rows:
        k = int(probs[row].argmax())
        out.append(f"{_short(str(items['item_id'].iloc[row]))}\ntrue: {classes[int(actual[row])]}\n"
                   f"pred: {classes[k]} ({probs[row, k]:.2f})")
    return out
