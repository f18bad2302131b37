"""Split assignment: train/val/test per row, stratified by class and seeded.

A split the source defines is kept. Seeds are drawn per (seed, split, class), so adding a class
never reshuffles the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.contracts import LABEL, SOURCE_SPLIT, SPLIT
from imgpipe.params.validate import ValidateParams


def _take(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (held out, rest) with ``round(n * fraction)`` held out."""
    shuffled = rng.permutation(indices)
    k = int(round(len(indices) * fraction))
    return np.sort(shuffled[:k]), np.sort(shuffled[k:])


def stratified_holdout(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int, salt: str) -> np.ndarray:
    """Indices from ``pool`` held out per class, seeded per (seed, salt, class) so adding a class
    never reshuffles the others."""
    held = []
    for cls in sorted(set(labels[pool].tolist())):
        members = pool[labels[pool] == cls]
        rng = np.random.default_rng([seed, *salt.encode(), 0, *str(cls).encode()])
        out, _rest = _take(members, fraction, rng)
        held.append(out)
    return np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)


def assign_splits(df: pd.DataFrame, cfg: ValidateParams) -> pd.Series:
    """train/val/test per row. A split the source defines is kept; the rest is stratified."""
    source = df[SOURCE_SPLIT].fillna("").to_numpy()
    labels = df[LABEL].astype(str).to_numpy()
    split = np.full(len(df), "train", dtype=object)
    split[source == "test"] = "test"
    split[source == "val"] = "val"
    pool = np.nonzero((source != "test") & (source != "val"))[0]
    if not (source == "test").any() and cfg.test_fraction > 0:
        test = stratified_holdout(labels, pool, cfg.test_fraction, cfg.seed, "test")
        split[test] = "test"
        pool = np.setdiff1d(pool, test)
    if not (source == "val").any() and cfg.val_fraction > 0:
        val = stratified_holdout(labels, pool, cfg.val_fraction, cfg.seed, "val")
        split[val] = "val"
    return pd.Series(split, index=df.index, name=SPLIT, dtype="string")
