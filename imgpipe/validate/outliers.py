"""Outliers from the manifest's statistics: dark, overexposed, near-constant, blurry, odd size.

Each check compares one manifest column with a threshold from ``validate.outliers``; nothing is
decoded. The defaults were set on the 50,000 CIFAR-10 training photographs, where they flag a
handful of images (README, "Validate and clean").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID, REVIEW_COLUMNS, SOURCE_PATH
from imgpipe.params.validate import OutlierParams

PHOTOMETRIC = ("dark", "overexposed", "near_constant", "blurry")
CHECKS = (*PHOTOMETRIC, "odd_size", "odd_aspect")  # the review ``check`` values written


def _std_max(df: pd.DataFrame) -> np.ndarray:
    cols = [c for c in df.columns if c.startswith("std_c")]
    return df[cols].max(axis=1).to_numpy(dtype=np.float64) if cols else np.zeros(len(df))


def outlier_findings(df: pd.DataFrame, cfg: OutlierParams, decision: str) -> pd.DataFrame:
    """One row per (image, failed check); ``score`` is the measured value, ``detail`` says why."""
    width = df["orig_width"].to_numpy(dtype=np.float64)
    height = df["orig_height"].to_numpy(dtype=np.float64)
    aspect = np.maximum(width, height) / np.maximum(np.minimum(width, height), 1)
    std_max = _std_max(df)
    checks = [
        ("dark", df["brightness_p95"].to_numpy(dtype=np.float64), "<", cfg.dark_max_p95,
         "95th brightness percentile"),
        ("overexposed", df["brightness_p05"].to_numpy(dtype=np.float64), ">", cfg.overexposed_min_p05,
         "5th brightness percentile"),
        ("near_constant", std_max, "<", cfg.constant_max_std, "largest channel std"),
        ("blurry", df["blur"].to_numpy(dtype=np.float64), "<", cfg.blur_min, "Laplacian variance"),
        ("odd_size", np.minimum(width, height), "<", cfg.min_side, "shorter original side"),
        ("odd_aspect", aspect, ">", cfg.max_aspect, "original aspect ratio"),
    ]
    frames = []
    # One photometric reason per image, the most telling first: a dark or overexposed picture is
    # also low in contrast and in edges, and a flat one has no edges; that is one finding, not three.
    claimed = np.zeros(len(df), dtype=bool)
    for name, values, op, limit, what in checks:
        hit = values < limit if op == "<" else values > limit
        if name in PHOTOMETRIC:
            hit &= ~claimed
            claimed |= hit
        idx = np.nonzero(hit)[0]
        if not len(idx):
            continue
        frames.append(pd.DataFrame({
            ITEM_ID: df[ITEM_ID].to_numpy()[idx],
            SOURCE_PATH: df[SOURCE_PATH].to_numpy()[idx],
            "check": name,
            "score": np.round(values[idx], 4),
            "decision": decision,
            "group_id": "",
            "suggested_label": "",
            "suggested_score": np.nan,
            "detail": [f"{what} {v:.4g} {op} {limit:g}" for v in values[idx]],
        }))
    return pd.concat(frames, ignore_index=True) if frames else empty_findings()


def empty_findings() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series([], dtype="string") for c in REVIEW_COLUMNS})
    frame["score"] = frame["score"].astype("float64")
    frame["suggested_score"] = frame["suggested_score"].astype("float64")
    return frame
