"""Split assignment: train/val/test per row, stratified by class and seeded, duplicates together.

A split the source defines is kept. Seeds are drawn per (seed, split, class), so adding a class
never reshuffles the others. Rows that share a duplicate group (exact or near duplicates, from
:mod:`imgpipe.validate.duplicates`) are assigned as one unit: the group's first row is drawn, weighted by the
group's size against each class's quota, and every member follows it, so a group never straddles
train, val and test and the splits keep the class proportions (a group larger than a class's
quota stays in train).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.contracts import LABEL, SOURCE_SPLIT, SPLIT
from imgpipe.params.validate import ValidateParams


def _take(units: np.ndarray, sizes: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Units drawn in a seeded random order until their sizes add up to ``target``; a unit that
    would overshoot is passed over (a group larger than the quota stays in the rest). With every
    size 1 this is simply the first ``target`` units of the permutation."""
    order = rng.permutation(len(units))
    taken, total = [], 0
    for i in order:
        if total >= target:
            break
        if total + sizes[i] <= target:
            taken.append(units[i])
            total += int(sizes[i])
    return np.sort(np.asarray(taken, dtype=np.int64))


def stratified_holdout(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int, salt: str,
                       sizes: np.ndarray | None = None) -> np.ndarray:
    """Units from ``pool`` held out per class: ``round(images * fraction)`` images of each class,
    counting each unit as ``sizes[unit]`` images (a duplicate group moves as one). Seeded per
    (seed, salt, class), so adding a class never reshuffles the others."""
    held = []
    for cls in sorted(set(labels[pool].tolist())):
        members = pool[labels[pool] == cls]
        weight = np.ones(len(members), dtype=np.int64) if sizes is None else np.asarray(sizes)[members]
        rng = np.random.default_rng([seed, *salt.encode(), 0, *str(cls).encode()])
        held.append(_take(members, weight, int(round(weight.sum() * fraction)), rng))
    return np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)


def assign_splits(df: pd.DataFrame, cfg: ValidateParams, groups: np.ndarray | None = None) -> pd.Series:
    """train/val/test per row. A split the source defines is kept; the rest is stratified.

    ``groups``: per row, the position of its group's first row (-1 = in no group). Only the first
    row of each group is drawn; the others take its split. Source-fixed splits are the caller's
    job to keep consistent within a group (see ``imgpipe.validate.validation``).
    """
    n = len(df)
    source = df[SOURCE_SPLIT].fillna("").to_numpy()
    labels = df[LABEL].astype(str).to_numpy()
    leader = np.arange(n) if groups is None else np.where(np.asarray(groups) >= 0, groups, np.arange(n))
    split = np.full(n, "train", dtype=object)
    split[source == "test"] = "test"
    split[source == "val"] = "val"
    drawn = leader == np.arange(n)
    free = (source != "test") & (source != "val")
    # Each drawn row stands for its whole group: a group of 100 near-copies counts as 100 images
    # against the split's per-class quota, so one big group cannot fill (or empty) a test class.
    sizes = np.bincount(leader[free], minlength=n)
    pool = np.nonzero(free & drawn)[0]
    if not (source == "test").any() and cfg.test_fraction > 0:
        test = stratified_holdout(labels, pool, cfg.test_fraction, cfg.seed, "test", sizes)
        split[test] = "test"
        pool = np.setdiff1d(pool, test)
    if not (source == "val").any() and cfg.val_fraction > 0:
        val = stratified_holdout(labels, pool, cfg.val_fraction, cfg.seed, "val", sizes)
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
