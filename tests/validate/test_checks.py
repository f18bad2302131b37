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
    df = _manifest(images)
    df.loc[25, "orig_width"] = 200  # odd aspect (200 x 32)
    found = outlier_findings(df, OutlierParams(), "flagged")
    assert list(found.columns) == list(REVIEW_COLUMNS)
    got = {(r.item_id, r.check) for r in found.itertuples()}
    assert got == {("img/003.png", "dark"), ("img/007.png", "overexposed"), ("img/011.png", "near_constant"),
                   ("img/019.png", "blurry"), ("img/025.png", "odd_aspect")}
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
