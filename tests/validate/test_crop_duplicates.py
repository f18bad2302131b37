"""The second near-duplicate pass: copies cropped up to 20% per side, rescaled and colour-shifted
are found on generated textured images, unrelated images are not paired, the first pass's shift
and JPEG copies still come out of the check, and the pairs are the same bytes for any thread count
or chunking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from imgpipe.params.validate import ValidateParams
from imgpipe.validate.checks.base import CheckContext
from imgpipe.validate.checks.duplicates import DuplicatesCheck
from imgpipe.validate.crop_duplicates import crop_duplicate_pairs, pairs_from, thumbnail

from planted import cropped, enhanced, hue_turned, reencoded, resized, shifted, textured_images

N = 48
COPIES = {
    "crop10": lambda im: cropped(im, (0.1, 0.03, 0.07, 0.0)),
    "crop20": lambda im: cropped(im, (0.2, 0.05, 0.0, 0.18)),
    "rescale": lambda im: resized(im, 16),
    "contrast": lambda im: enhanced(im, "Contrast", 0.65),
    "saturation": lambda im: enhanced(im, "Color", 1.6),
    "hue": hue_turned,
    "crop+colour+jpeg": lambda im: reencoded(hue_turned(enhanced(enhanced(cropped(im, (0.15, 0.0, 0.12, 0.05)),
                                                                          "Brightness", 0.8), "Color", 0.6), 6), 75),
}


@pytest.fixture(scope="module")
def planted():
    base = textured_images(N, seed=3)
    copies = np.stack([fn(base[k]) for k, fn in enumerate(COPIES.values())])
    return base, np.concatenate([base, copies])


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["a"].tolist(), frame["b"].tolist(), strict=True))


def test_cropped_rescaled_and_colour_shifted_copies_are_found_and_nothing_else(planted):
    _, images = planted
    got = pairs_from(images, chunk=20)
    assert _pairs(got) == {(k, N + k) for k in range(len(COPIES))}
    assert (got["similarity"] >= 0.96).all()


def test_unrelated_images_are_not_paired(planted):
    base, _ = planted
    assert pairs_from(base).empty
    assert pairs_from(base[:1]).empty  # one image: nothing to pair


def test_same_pairs_for_any_thread_count_and_chunking(planted):
    _, images = planted
    with threadpool_limits(1):
        one = pairs_from(images, chunk=7)
    with threadpool_limits(2):
        two = crop_duplicate_pairs(iter([images]), block=16)
    pd.testing.assert_frame_equal(one, two)


def test_thumbnail_is_an_exact_area_average():
    img = np.arange(64 * 64 * 3, dtype=np.int64).reshape(1, 64, 64, 3) % 251
    img = img.astype(np.uint8)
    want = img.reshape(1, 32, 2, 32, 2, 3).astype(np.float64).mean(axis=(2, 4))
    assert np.abs(thumbnail(img, 32).astype(np.float64) - want).max() <= 0.5
    assert thumbnail(img[:, :32, :32], 32).tobytes() == img[:, :32, :32].tobytes()  # right size: as is


def _context(images: np.ndarray, max_crop: float) -> CheckContext:
    n = len(images)
    rows = pd.DataFrame({"item_id": [f"img/{i:03d}.png" for i in range(n)],
                         "source_path": [f"img/{i:03d}.png" for i in range(n)],
                         "label": ["a"] * n, "label_index": [0] * n, "source_split": [""] * n,
                         "pixel_sha256": [f"{i:064x}" for i in range(n)]})
    cfg = ValidateParams()
    cfg = cfg.model_copy(update={"near_duplicates": cfg.near_duplicates.model_copy(update={"max_crop": max_crop})})
    return CheckContext(rows=rows, classes=["a"], cfg=cfg, pixel_loader=lambda pos: images[pos])


def test_the_check_keeps_the_first_pass_pairs_and_adds_the_crops(planted):
    base, images = planted
    firsts = np.stack([shifted(base[20], 2, 1), reencoded(base[21], 75)])
    everything = np.concatenate([images, firsts])
    last = len(images)

    def groups(max_crop):
        found = DuplicatesCheck().run(_context(everything, max_crop)).findings
        return set(found.groupby("group_id")["item_id"].apply(lambda s: tuple(sorted(s))))

    name = "img/{:03d}.png".format
    first_pass = {(name(20), name(last)), (name(21), name(last + 1))}
    first = groups(0.0)  # the first pass alone: the shift and the JPEG, and the mildest of the others
    assert first_pass <= first and len(first) < len(COPIES) + len(first_pass)
    assert groups(0.2) == first_pass | {(name(k), name(N + k)) for k in range(len(COPIES))}


def test_max_crop_auto_runs_the_pass_for_photos_and_not_for_handwriting():
    from imgpipe.validate.crop_duplicates import AUTO_MAX_CROP, effective_max_crop, resolve_max_crop

    cfg = ValidateParams()
    assert cfg.near_duplicates.max_crop == "auto" and effective_max_crop(cfg.near_duplicates) == AUTO_MAX_CROP
    assert resolve_max_crop(cfg, "digits").near_duplicates.max_crop == 0.0
    assert resolve_max_crop(cfg, " MNIST ").near_duplicates.max_crop == 0.0
    assert resolve_max_crop(cfg, "/data/cifar10-train.tar.gz").near_duplicates.max_crop == AUTO_MAX_CROP
    mine = cfg.model_copy(update={"near_duplicates": cfg.near_duplicates.model_copy(update={"max_crop": 0.1})})
    assert resolve_max_crop(mine, "digits").near_duplicates.max_crop == 0.1  # a set value wins
