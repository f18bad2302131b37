"""Split assignment is stable per item: correcting labels, excluding images or adding images
never moves any other image between splits; duplicate groups stay together; source splits stay."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.params.validate import ValidateParams
from imgpipe.split import assign_splits, item_draws, leaking_groups

CFG = ValidateParams(test_fraction=0.2, val_fraction=0.15, seed=7)


def _frame(n: int, classes: int = 5, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"img/{i:05d}.png" for i in range(start, start + n)],
                         "label": [f"c{i % classes}" for i in range(start, start + n)],
                         "source_split": [""] * n})


def _by_id(df: pd.DataFrame, groups=None) -> dict[str, str]:
    return dict(zip(df["item_id"], assign_splits(df, CFG, groups).to_numpy(), strict=True))


def test_shares_are_close_to_the_fractions_per_class():
    df = _frame(5000)
    split = assign_splits(df, CFG)
    for _, part in split.groupby(df["label"].to_numpy()):
        share = part.value_counts(normalize=True)
        assert abs(share["test"] - 0.2) < 0.04
        assert abs(share["val"] - 0.15 * 0.8) < 0.04


def test_label_corrections_move_no_image():
    df = _frame(600)
    before = _by_id(df)
    fixed = df.copy()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(df), 60, replace=False)
    fixed.loc[rows, "label"] = [f"c{(int(lab[1:]) + 1) % 5}" for lab in fixed.loc[rows, "label"]]
    assert _by_id(fixed) == before


def test_excluded_images_move_no_other_image():
    df = _frame(600)
    before = _by_id(df)
    kept = df.drop(index=np.random.default_rng(1).choice(len(df), 90, replace=False)).reset_index(drop=True)
    after = _by_id(kept)
    assert after == {i: before[i] for i in kept["item_id"]}


def test_new_images_move_no_existing_image_and_row_order_does_not_matter():
    df = _frame(600)
    before = _by_id(df)
    grown = pd.concat([_frame(200, start=600), df], ignore_index=True).sample(frac=1, random_state=3)
    after = _by_id(grown.reset_index(drop=True))
    assert {i: after[i] for i in before} == before
    assert {"train", "val", "test"} <= set(after[i] for i in after if i not in before)


def test_groups_stay_together_whatever_their_first_row():
    df = _frame(300)
    groups = np.full(300, -1)
    for lead in range(0, 60, 3):  # 20 groups of three rows (same class not required)
        groups[lead:lead + 3] = lead
    split = assign_splits(df, CFG, groups).to_numpy()
    assert leaking_groups(split, groups) == []
    # Reverse the rows: the groups' first rows change, their splits do not.
    rev = df.iloc[::-1].reset_index(drop=True)
    rev_groups = np.full(300, -1)
    for lead in range(0, 60, 3):
        rows = [299 - r for r in range(lead, lead + 3)]
        rev_groups[rows] = min(rows)
    rev_split = dict(zip(rev["item_id"], assign_splits(rev, CFG, rev_groups).to_numpy(), strict=True))
    assert rev_split == dict(zip(df["item_id"], split, strict=True))


def test_a_group_goes_by_its_smallest_item_id():
    df = _frame(40)
    groups = np.full(40, -1)
    groups[[5, 6, 7]] = 5
    split = assign_splits(df, CFG, groups).to_numpy()
    alone = assign_splits(df, CFG).to_numpy()
    assert set(split[[5, 6, 7]]) == {alone[5]}  # img/00005 is the smallest id of the group


def test_source_splits_are_kept_and_only_the_missing_one_is_drawn():
    df = _frame(400)
    df.loc[:99, "source_split"] = "test"
    split = assign_splits(df, CFG).to_numpy()
    assert set(split[:100]) == {"test"} and "test" not in set(split[100:])
    assert 0.05 < (split[100:] == "val").mean() < 0.25  # val_fraction of the pool, no test cut


def test_draws_are_fixed_numbers():
    """The same id and seed give the same draw on every machine and Python run."""
    a = item_draws(["img/00001.png", "x#3"], 7)
    assert a.tolist() == [0.6884665424307352, 0.46036518790794334]
    assert ((a >= 0) & (a < 1)).all() and not np.array_equal(a, item_draws(["img/00001.png", "x#3"], 8))
