"""Split assignment: train/val/test per row, stable per item, seeded, duplicates together.

Each item's split is a function of its own ``item_id`` (and the seed) only: a seeded hash maps the
id to a number ``u`` in [0, 1), and ``u`` below ``test_fraction`` means test, the next
``val_fraction`` of the rest means val, the remainder train. So a label correction, an excluded
image or a new image never moves any *other* image between splits, and the accuracy before and
after a person's corrections is measured on the same test images. Each class gets its share in
expectation (binomially: a class of n images gets ``n*f +- sqrt(n*f*(1-f))`` test images), not
exactly: exact per-class quotas would have to move a boundary image whenever a class's count
changes.

A split the source defines is kept. Rows that share a duplicate group (exact or near duplicates,
from :mod:`imgpipe.validate.duplicates`) move as one unit, drawn by the hash of the group's
smallest ``item_id`` (not of its first row, so the row order never matters); a group larger than
its class's share of a held-out split stays in train, so one big group cannot swamp a test class.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID, LABEL, SOURCE_SPLIT, SPLIT
from imgpipe.params.validate import ValidateParams


def item_draws(item_ids, seed: int) -> np.ndarray:
    """A seeded, uniform number in [0, 1) per item id; the same id and seed give the same number
    on every machine (BLAKE2b, not Python's salted ``hash``)."""
    key = str(int(seed)).encode() + b"\0"
    out = np.empty(len(item_ids), dtype=np.float64)
    for i, item in enumerate(item_ids):
        digest = hashlib.blake2b(key + str(item).encode(), digest_size=8).digest()
        out[i] = (int.from_bytes(digest, "big") >> 11) / float(1 << 53)  # 53 bits: exact in a float
    return out


def assign_splits(df: pd.DataFrame, cfg: ValidateParams, groups: np.ndarray | None = None) -> pd.Series:
    """train/val/test per row. A split the source defines is kept; the rest is drawn per item.

    ``groups``: per row, the position of its group's first row (-1 = in no group); every member
    takes the split drawn for the group. Source-fixed splits are the caller's job to keep
    consistent within a group (see ``imgpipe.validate.validation``).
    """
    n = len(df)
    source = df[SOURCE_SPLIT].fillna("").astype(str).to_numpy()
    labels = df[LABEL].astype(str).to_numpy()
    ids = df[ITEM_ID].astype(str).to_numpy()
    leader = np.arange(n) if groups is None else np.where(np.asarray(groups) >= 0, groups, np.arange(n))
    free = (source != "test") & (source != "val")

    # The group's key: its smallest item id (a group's draw does not depend on the row order).
    key = ids.copy()
    for row in np.nonzero(leader != np.arange(n))[0]:
        lead = leader[row]
        if ids[row] < key[lead]:
            key[lead] = ids[row]
    u = item_draws(key[leader], cfg.seed)

    draw_test = not (source == "test").any() and cfg.test_fraction > 0
    draw_val = not (source == "val").any() and cfg.val_fraction > 0
    test_cut = cfg.test_fraction if draw_test else 0.0
    # val is val_fraction of what is not test: u in [test_cut, test_cut + val_fraction*(1-test_cut)).
    val_cut = test_cut + (cfg.val_fraction * (1.0 - test_cut) if draw_val else 0.0)

    split = np.full(n, "train", dtype=object)
    split[free & (u < test_cut)] = "test"
    split[free & (u >= test_cut) & (u < val_cut)] = "val"

    # A group bigger than its class's expected share of the split it drew stays in train.
    sizes = np.bincount(leader[free], minlength=n)
    class_count = pd.Series(labels[free]).value_counts().to_dict()
    for lead in np.nonzero(sizes > 1)[0]:
        drawn = split[lead]
        if drawn == "train":
            continue
        share = test_cut if drawn == "test" else val_cut - test_cut
        if sizes[lead] > max(1.0, class_count.get(labels[lead], 0) * share):
            split[free & (leader == lead)] = "train"

    split[source == "test"] = "test"
    split[source == "val"] = "val"
    return pd.Series(split, index=df.index, name=SPLIT, dtype="string")


def leaking_groups(split: np.ndarray, groups: np.ndarray) -> list[int]:
    """Group ids whose members sit in more than one split (must be empty after validate)."""
    frame = pd.DataFrame({"g": np.asarray(groups), "s": np.asarray(split)})
    frame = frame[frame["g"] >= 0]
    counts = frame.groupby("g")["s"].nunique()
    return sorted(int(g) for g in counts[counts > 1].index)
