"""The second near-duplicate pass: copies cropped up to 20% per side, rescaled and colour-shifted
are found on generated textured images, unrelated images are not paired, the first pass's shift
and JPEG copies still come out of the check, and the pairs are the same bytes for any thread count
or chunking, and the same as when the pass held every thumbnail (golden pairs), in a few hundred
bytes per image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from crop_golden import GOLDEN, golden_images
from PIL import Image
from threadpoolctl import threadpool_limits

from imgpipe.params.validate import ValidateParams
from imgpipe.validate import chunked, crop_duplicates
from imgpipe.validate.checks.base import CheckContext
from imgpipe.validate.checks.duplicates import DuplicatesCheck
from imgpipe.validate.crop_duplicates import crop_duplicate_pairs, pairs_from, thumbnail
from imgpipe.validate.duplicates import lsh_keys

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
        two = crop_duplicate_pairs(images, block=16)
    pd.testing.assert_frame_equal(one, two)
    larger = np.stack([np.asarray(Image.fromarray(im).resize((48, 48), Image.BILINEAR)) for im in images])
    pd.testing.assert_frame_equal(pairs_from(larger, chunk=5), crop_duplicate_pairs(larger, chunk=1000, block=40))


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


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame({"a": np.array([r[0] for r in rows], np.int64), "b": np.array([r[1] for r in rows], np.int64),
                         "similarity": np.array([r[2] for r in rows], np.float32)})


@pytest.mark.parametrize("chunk, on_disk", [(4096, False), (13, True)])
def test_same_pairs_as_when_every_thumbnail_was_kept(monkeypatch, chunk, on_disk):
    """Golden pairs recorded from the version that held every thumbnail, for any chunk size, with
    the exact embeddings in memory or in the temporary file (read a few rows per map), and the
    look-ups and similarities done in small pieces."""
    if on_disk:  # the int8 filter and the temporary file
        monkeypatch.setattr(crop_duplicates, "CENTRE_IN_MEMORY_BYTES", 0)
        monkeypatch.setattr(chunked, "EXACT_IN_MEMORY_BYTES", 0)
        monkeypatch.setattr(chunked, "GATHER_ROWS", 5)
        monkeypatch.setattr(crop_duplicates, "LOOKUP_CANDIDATES", 400)  # look-ups and similarities in pieces
        monkeypatch.setattr(crop_duplicates, "SIMILARITY_BATCH", 50)
        monkeypatch.setattr(crop_duplicates, "KEEP_HITS", 3)  # the hits cut to the best as they come
    got = crop_duplicate_pairs(golden_images(), chunk=chunk, block=64)
    pd.testing.assert_frame_equal(got, _frame(GOLDEN))


def test_per_image_state_is_a_few_hundred_bytes(monkeypatch):
    """What grows with the number of images past the in-memory caps (the bucket starts are a fixed size)."""
    monkeypatch.setattr(chunked, "EXACT_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(crop_duplicates, "CENTRE_IN_MEMORY_BYTES", 0)

    def resident(n: int) -> int:
        index = crop_duplicates._Index(n, crop_duplicates.GRID, crop_duplicates.VERIFY_GRID, crop_duplicates.TABLES)
        index.usable[:] = True
        index.finish(crop_duplicates.BITS)
        assert index.exact.on_disk
        index.exact.close()
        held = [*vars(index).values(), *vars(index.projected).values()]
        return sum(v.nbytes for v in held if isinstance(v, np.ndarray))

    # 309: keys 64, int8 view 200, its projection 44, a flag
    assert (resident(6000) - resident(2000)) / 4000 <= 320  # against 3,072 for a 32x32x3 thumbnail


def test_the_int8_filter_bounds_the_exact_similarity():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((500, 192)).astype(np.float32)
    emb[:250] *= np.linspace(0.01, 3, 192, dtype=np.float32)  # uneven components: a large scale
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    codes, scale, bound = chunked.quantise(emb)
    error = np.linalg.norm(emb.astype(np.float64) - codes * scale[:, None].astype(np.float64), axis=1)
    assert (error <= bound).all() and bound.max() < 0.05


def test_exact_rows_read_back_the_same_bytes_from_the_file(monkeypatch):
    monkeypatch.setattr(chunked, "GATHER_ROWS", 7)
    rng = np.random.default_rng(1)
    table = rng.standard_normal((300, 11)).astype(np.float32)
    disk, memory = chunked.ExactRows(300, 11, in_memory_bytes=0), chunked.ExactRows(300, 11)
    for s in range(0, 300, 64):
        disk.write(s, table[s : s + 64])
        memory.write(s, table[s : s + 64])
    rows = rng.integers(0, 300, 200)
    assert disk.on_disk and not memory.on_disk
    assert disk.read(rows).tobytes() == memory.read(rows).tobytes() == table[rows].tobytes()
    assert disk.read(np.zeros(0, np.int64)).shape == (0, 11)
    disk.close()


def test_packed_lsh_keys_equal_the_sum_of_bit_weights():
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((64, 48)).astype(np.float32)
    for bits, dtype in ((20, np.uint32), (24, np.uint64), (8, np.uint64)):
        planes = rng.standard_normal((5, bits, 48)).astype(np.float32)
        signs = (emb @ planes.reshape(5 * bits, 48).T > 0).reshape(64, 5, bits).astype(np.uint64)
        want = (signs * (np.uint64(1) << np.arange(bits, dtype=np.uint64))).sum(axis=2, dtype=np.uint64)
        got = lsh_keys(emb, planes, dtype)
        assert got.dtype == dtype and (got.astype(np.uint64) == want).all()


@pytest.mark.parametrize("in_memory", [True, False])
def test_the_projected_filter_never_drops_a_candidate_that_reaches_the_level(monkeypatch, in_memory):
    """The first filter bounds the exact similarity from above, for views held exactly or as int8
    codes: asked with each pair's own exact similarity as the level, every pair passes."""
    if not in_memory:
        monkeypatch.setattr(crop_duplicates, "CENTRE_IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(chunked, "BASIS_SAMPLE", 50)  # directions from a few views only
    rng = np.random.default_rng(3)
    n, dim = 400, 3 * crop_duplicates.GRID**2
    views = rng.standard_normal((n, 6)) @ rng.standard_normal((6, dim)) + 0.3 * rng.standard_normal((n, dim))
    views[:40] = rng.standard_normal((40, dim))  # some far from any shared direction
    views = (views / np.linalg.norm(views, axis=1, keepdims=True)).astype(np.float32)
    index = crop_duplicates._Index(n, crop_duplicates.GRID, 0, crop_duplicates.TABLES)
    index.usable[:] = True
    if in_memory:
        index.centre[:] = views
    else:
        index.codes[:], index.scale[:], index.bound[:] = chunked.quantise(views)
    index.finish(4)
    index.exact.close()
    # queries: the views themselves, slightly moved copies, and unrelated rows
    query = np.concatenate([views[:100], views[100:200] + 0.05 * rng.standard_normal((100, dim)),
                            rng.standard_normal((100, dim))]).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    q, other = (g.ravel() for g in np.meshgrid(np.arange(len(query)), np.arange(n), indexing="ij"))
    exact = np.einsum("nd,nd->n", query[q].astype(np.float64), views[other].astype(np.float64)).astype(np.float32)
    bound = index.projected
    projected = bound.project_queries(query)
    assert bound.may_reach(projected, q, other, exact).all()
    # and it is a filter worth having: most pairs are left out at the candidate level
    assert bound.may_reach(projected, q, other, crop_duplicates.CANDIDATE).mean() < 0.05
    # without the codes' slack and with the residual length 0.1% short, some would be dropped: the
    # test can see a wrong bound
    bound.records[:, -8:-4] = 0
    bound.records[:, -4:] = (bound.records[:, -4:].copy().view(np.float32) * np.float32(0.999)).view(np.uint8)
    assert not bound.may_reach(projected, q, other, exact).all()
