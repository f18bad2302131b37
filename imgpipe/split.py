"""Split assignment: train/val/test per row, stratified by class and seeded, duplicates together.

A split the source defines is kept. Seeds are drawn per (seed, split, class), so adding a class
never reshuffles the others. Rows that share a duplicate group (exact or near duplicates, from
:mod:`imgpipe.clean.duplicates`) are assigned as one unit: the group's first row is drawn and
every member follows it, so a group never straddles train, val and test.
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


def assign_splits(df: pd.DataFrame, cfg: ValidateParams, groups: np.ndarray | None = None) -> pd.Series:
    """train/val/test per row. A split the source defines is kept; the rest is stratified.

    ``groups``: per row, the position of its group's first row (-1 = in no group). Only the first
    row of each group is drawn; the others take its split. Source-fixed splits are the caller's
    job to keep consistent within a group (see ``imgpipe.clean.run``).
    """
    n = len(df)
    source = df[SOURCE_SPLIT].fillna("").to_numpy()
    labels = df[LABEL].astype(str).to_numpy()
    leader = np.arange(n) if groups is None else np.where(np.asarray(groups) >= 0, groups, np.arange(n))
    split = np.full(n, "train", dtype=object)
    split[source == "test"] = "test"
    split[source == "val"] = "val"
    drawn = leader == np.arange(n)
    pool = np.nonzero((source != "test") & (source != "val") & drawn)[0]
    if not (source == "test").any() and cfg.test_fraction > 0:
        test = stratified_holdout(labels, pool, cfg.test_fraction, cfg.seed, "test")
        split[test] = "test"
        pool = np.setdiff1d(pool, test)
    if not (source == "val").any() and cfg.val_fraction > 0:
        val = stratified_holdout(labels, pool, cfg.val_fraction, cfg.seed, "val")
        split[val] = "val"
    follow = ~drawn & (source != "test") & (source != "val")
    split[follow] = split[leader[follow]]
    return pd.Series(split, index=df.index, name=SPLIT, dtype="string")


def leaking_groups(split: np.ndarray, groups: np.ndarray) -> list[int]:
    """Group ids whose members sit in more than one split (must be empty after validate)."""
    frame = pd.DataFrame({"g": np.asarray(groups), "s": np.asarray(split)})
    frame = frame[frame["g"] >= 0]
    counts = frame.groupby("g")["s"].nunique()
    return sorted(int(g) for g in counts[counts > 1].index)
