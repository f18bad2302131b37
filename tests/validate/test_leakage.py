"""No near-duplicate group straddles train, val and test after the stage, over all splits; a
source-fixed test split keeps all its images and the training copies of test images leave."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.io import read_parquet
from imgpipe.params.validate import LabelIssueParams, OutlierParams, ValidateParams
from imgpipe.validate.duplicates import brute_force_pairs
from imgpipe.validate.suite import load_suite
from imgpipe.validate.validation import validate_dataset

from factories import write_labels, write_preprocessed
from planted import reencoded, resized, shifted, smooth_images

CLASSES = ["a", "b", "c"]
SUITE = load_suite("expectations/image_dataset.json")
SPEC = {"height": 32, "width": 32, "channels": 3}


def _dataset(tmp_path, source_splits):
    images = smooth_images(90, seed=5)
    labels = [i % 3 for i in range(90)]
    # Rows 60.. are the "test" block when the source fixes one; copies of them sit in the train block.
    for dst, src, fn in ((0, 60, lambda im: shifted(im, 2, 0)), (1, 61, lambda im: im.copy()),
                         (2, 62, reencoded), (4, 3, resized), (5, 3, lambda im: shifted(im, 0, 1))):
        images[dst] = fn(images[src])
        labels[dst] = labels[src]
    ids = [f"img/{i:03d}.png" for i in range(90)]
    manifest = write_preprocessed(tmp_path / "pre", images, ids, source_splits)
    table = write_labels(tmp_path / "lab", ids, labels, CLASSES)
    issues = read_parquet(tmp_path / "lab" / "issues.parquet")
    by_id = dict(zip(ids, images, strict=True))

    def load(rows: pd.DataFrame) -> np.ndarray:
        return np.stack([by_id[i] for i in rows["item_id"]])

    cfg = ValidateParams(label_issues=LabelIssueParams(enabled=False), outliers=OutlierParams(blur_min=0))
    rejects = manifest.iloc[:0][["item_id", "source_path"]].assign(reason="")
    result = validate_dataset(manifest, table, issues, CLASSES, rejects, SUITE, cfg, load_pixels=load,
                      image_spec=SPEC, configured=SPEC)
    return result, by_id


def _assert_no_leak(result, by_id):
    data = result.dataset
    pixels = np.stack([by_id[i] for i in data["item_id"]])
    pairs = brute_force_pairs(pixels, 0.98)
    split = data["split"].to_numpy()
    assert len(pairs) > 0 or (data["pixel_sha256"].duplicated().sum() > 0)
    straddle = [(data["item_id"].iloc[a], data["item_id"].iloc[b]) for a, b in zip(pairs["a"], pairs["b"], strict=True)
                if split[a] != split[b]]
    assert straddle == []
    same_pixels = data.groupby("pixel_sha256")["split"].nunique()
    assert (same_pixels <= 1).all()
    assert set(split) == {"train", "val", "test"}


def test_source_fixed_test_split_keeps_its_images_and_training_copies_leave(tmp_path):
    splits = ["train"] * 60 + ["test"] * 30
    result, by_id = _dataset(tmp_path, splits)
    data = result.dataset
    test_ids = {f"img/{i:03d}.png" for i in range(60, 90)}
    assert set(data.loc[data["split"] == "test", "item_id"]) == test_ids  # every test image kept, nothing added
    leak = result.review[result.review["check"] == "leakage"]
    assert set(leak["item_id"]) == {"img/000.png", "img/001.png", "img/002.png"}
    assert set(leak["decision"]) == {"dropped"}
    assert not set(leak["item_id"]) & set(data["item_id"])
    assert result.quality["leakage_removed"] == 3
    # Each member's own wording: the training copies say what they duplicate, the test originals do not.
    groups = result.review[result.review["group_id"].isin(set(leak["group_id"]))]
    says = {i: "duplicates a source-test image" in d for i, d in zip(groups["item_id"], groups["detail"], strict=True)}
    assert says == {"img/000.png": True, "img/001.png": True, "img/002.png": True,
                    "img/060.png": False, "img/061.png": False, "img/062.png": False}
    _assert_no_leak(result, by_id)


def test_groups_never_straddle_drawn_splits(tmp_path):
    result, by_id = _dataset(tmp_path, None)
    assert result.quality["near_duplicate_groups"] == 3 and result.quality["exact_duplicate_groups"] == 1
    _assert_no_leak(result, by_id)


def test_a_big_duplicate_group_does_not_swamp_a_class_in_test():
    """One class's images mostly in one near-duplicate group: the group stays in one split, and
    that split is train (the group is larger than the class's test share), not test."""
    import numpy as np
    import pandas as pd

    from imgpipe.params.validate import ValidateParams
    from imgpipe.split import assign_splits, leaking_groups

    labels = ["a"] * 100 + ["b"] * 100
    df = pd.DataFrame({"label": labels, "source_split": [""] * 200,
                       "item_id": [f"img/{i:03d}.png" for i in range(200)]})
    groups = np.full(200, -1)
    groups[10:90] = 10  # 80 of class a's 100 images are one group led by row 10
    split = assign_splits(df, ValidateParams(test_fraction=0.2, val_fraction=0.0, seed=3), groups).to_numpy()
    assert leaking_groups(split, groups) == []
    assert set(split[10:90]) == {"train"}, "a group larger than the quota stays in train"
    # Each image outside the group is drawn alone (stable per item), so class b gets its share.
    assert 10 <= (pd.Series(labels)[split == "test"] == "b").sum() <= 30
