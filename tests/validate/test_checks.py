"""Each cleaning check on generated images: it finds exactly the planted faults, and a clean
generated set gives no false alarm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imgpipe.contracts import REVIEW_COLUMNS
from imgpipe.params.validate import LabelIssueParams, OutlierParams
from imgpipe.preprocess.features import compute
from imgpipe.validate.duplicates import (
    brute_force_pairs,
    component_groups,
    exact_groups,
    near_duplicate_pairs,
)
from imgpipe.validate.label_issues import label_issue_findings
from imgpipe.validate.outliers import outlier_findings

from factories import class_images
from planted import blurred, brightened, reencoded, resized, shifted, smooth_images

COPIES = {"shift2": lambda im: shifted(im, 2, 1), "shift1": lambda im: shifted(im, -1, 0), "jpeg": reencoded,
          "resize": resized, "bright": brightened}


def _manifest(pixels: np.ndarray) -> pd.DataFrame:
    cols = compute(pixels)
    df = pd.DataFrame(cols)
    df.insert(0, "item_id", [f"img/{i:03d}.png" for i in range(len(pixels))])
    df.insert(1, "source_path", df["item_id"])
    df["orig_width"] = pixels.shape[2]
    df["orig_height"] = pixels.shape[1]
    return df


@pytest.fixture(scope="module")
def planted():
    base = smooth_images(60, seed=1)
    copies = [fn(base[k]) for k, fn in enumerate(COPIES.values())]
    return base, np.concatenate([base, np.stack(copies)])


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["a"].tolist(), frame["b"].tolist(), strict=True))


def test_near_duplicates_find_exactly_the_planted_copies(planted):
    base, images = planted
    expected = {(k, 60 + k) for k in range(len(COPIES))}
    assert _pairs(near_duplicate_pairs(images, 0.98)) == expected
    assert _pairs(brute_force_pairs(images, 0.98)) == expected  # the quadratic reference agrees


def test_near_duplicates_no_false_alarm_on_a_clean_set(planted):
    base, _ = planted
    assert near_duplicate_pairs(base, 0.98).empty


def _flat_images(n: int, seed: int) -> np.ndarray:
    """Flat after the resize: a grey circle one level off a grey ground, a constant, a near-constant."""
    yy, xx = np.mgrid[:32, :32]
    circle = (yy - 16) ** 2 + (xx - 16) ** 2 < 100
    rng = np.random.default_rng(seed)
    out = np.empty((n, 32, 32, 3), np.uint8)
    for k in range(n):
        grey = 100 + 10 * k
        out[k] = grey
        if k % 3 == 0:
            out[k][circle] = grey + 1
        elif k % 3 == 1:
            out[k] += rng.integers(0, 2, (32, 32, 3), dtype=np.uint8)
    return out


def test_flat_images_neither_crash_nor_change_the_near_duplicates():
    """600 photographs, 8 of them flat: the sorted LSH keys used to be overwritten in place for the
    flat ones, unsorted, and searchsorted then crashed ("repeats may not contain negative values")."""
    base = smooth_images(600, seed=0)
    copies = np.stack([shifted(base[3], 1, 1), shifted(base[10], -1, 0)])
    photos = np.concatenate([base, copies])
    mixed = photos.copy()
    at = np.sort(np.random.default_rng(0).choice(600, 8, replace=False))
    at = at[~np.isin(at, [3, 10])]
    mixed[at] = _flat_images(len(at), seed=1)
    got = near_duplicate_pairs(mixed, 0.98)
    assert _pairs(got) == {(3, 600), (10, 601)}
    assert _pairs(brute_force_pairs(mixed, 0.98)) == _pairs(got)
    # Flat images take no part: the pairs of the others are what they are without them.
    keep = np.setdiff1d(np.arange(len(photos)), at)
    alone = near_duplicate_pairs(photos[keep], 0.98)
    assert [(keep[a], keep[b], s) for a, b, s in alone.itertuples(index=False)] == list(got.itertuples(index=False))
    assert near_duplicate_pairs(_flat_images(6, seed=2), 0.98).empty  # nothing but flat images


def test_groups_are_transitive():
    groups = component_groups(6, np.array([0, 1, 4]), np.array([1, 3, 5]))
    assert groups.tolist() == [0, 0, -1, 0, 4, 4]


def test_exact_groups_by_pixel_hash():
    assert exact_groups(pd.Series(["a", "b", "a", "c", "b"])).tolist() == [0, 1, 0, -1, 1]


def test_outliers_find_exactly_the_planted_faults():
    base = smooth_images(40, seed=2)
    images = base.copy()
    images[3] = np.clip(base[3] * 0.08, 0, 255).astype(np.uint8)  # dark
    images[7] = (240 + base[7] // 17).astype(np.uint8)  # overexposed
    images[11] = (128 + np.random.default_rng(0).integers(0, 3, base[11].shape)).astype(np.uint8)  # near-constant
    images[19] = blurred(base[19])  # blurry
    images[30] = 128  # constant
    images[31] = _flat_images(1, seed=0)[0]  # a grey circle one level off its grey ground
    df = _manifest(images)
    df.loc[25, "orig_width"] = 200  # odd aspect (200 x 32)
    found = outlier_findings(df, OutlierParams(), "flagged")
    assert list(found.columns) == list(REVIEW_COLUMNS)
    got = {(r.item_id, r.check) for r in found.itertuples()}
    assert got == {("img/003.png", "dark"), ("img/007.png", "overexposed"), ("img/011.png", "near_constant"),
                   ("img/019.png", "blurry"), ("img/025.png", "odd_aspect"), ("img/030.png", "near_constant"),
                   ("img/031.png", "near_constant")}
    assert outlier_findings(_manifest(base), OutlierParams(), "flagged").empty


def test_label_issues_find_the_swapped_labels():
    images, y = class_images(50, 3, size=32)
    rng = np.random.default_rng(3)
    swapped = np.sort(rng.choice(len(y), 3, replace=False))
    noisy = y.copy()
    noisy[swapped] = (y[swapped] + 1) % 3
    classes = ["a", "b", "c"]
    df = pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(len(y))], "source_path": "",
                       "label_index": noisy})
    cfg = LabelIssueParams(max_flag_fraction=0.04)  # a review budget of 6 images
    found, accuracy = label_issue_findings(df, images, classes, cfg, "flagged")
    assert accuracy > 0.9
    assert set(found["item_id"]) >= {f"i{i:03d}" for i in swapped}
    for i in swapped:
        row = found[found["item_id"] == f"i{i:03d}"].iloc[0]
        assert row["suggested_label"] == classes[y[i]] and row["score"] < 0.5 < row["suggested_score"]
    clean_df = df.assign(label_index=y)
    clean, _ = label_issue_findings(clean_df, images, classes, cfg, "flagged")
    assert clean.empty


def test_label_issues_with_flat_images_still_find_the_swapped_labels():
    images, y = class_images(50, 3, size=32)
    flat = _flat_images(6, seed=4)
    images = np.concatenate([images, flat, flat[:1]])  # one flat image twice (identical pixels)
    y = np.concatenate([y, [0, 1, 2, 0, 1, 2, 0]])
    noisy = y.copy()
    swapped = np.array([7, 77, 140])
    noisy[swapped] = (y[swapped] + 1) % 3
    df = pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(len(y))], "source_path": "", "label_index": noisy})
    found, accuracy = label_issue_findings(df, images, ["a", "b", "c"], LabelIssueParams(max_flag_fraction=0.06),
                                           "flagged")
    assert accuracy > 0.85 and np.isfinite(found["score"]).all() and np.isfinite(found["suggested_score"]).all()
    assert set(found["item_id"]) >= {f"i{i:03d}" for i in swapped}
