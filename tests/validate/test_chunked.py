"""Bounded-memory validate (imgpipe.validate.chunked): the chunked paths give the same bytes as
the all-at-once ones (near-duplicate pairs, label-issue features and probabilities), features
spilled to disk read back exactly, and the checks' per-chunk work on a 2-worker Dask
LocalCluster gives the same outputs as in this process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from processes import assert_no_new_children, child_processes

from imgpipe.params.validate import ValidateParams
from imgpipe.validate import chunked, duplicates, label_issues
from imgpipe.validate.checks.base import CheckContext
from imgpipe.validate.chunked import RowStore, ShardPixels, array_source
from imgpipe.validate.duplicates import near_duplicate_pairs

from factories import class_images, write_labels, write_preprocessed
from planted import reencoded, shifted, smooth_images


def _with_copies(n: int, seed: int) -> np.ndarray:
    images = smooth_images(n, seed=seed)
    for k in range(3, n, 11):  # shifted and re-encoded copies of earlier images
        images[k] = shifted(images[k - 3], 1, -1) if k % 2 else reencoded(images[k - 3])
    return images


def test_near_duplicate_pairs_are_the_same_in_chunks_as_all_at_once(monkeypatch):
    images = _with_copies(120, seed=4)
    whole = near_duplicate_pairs(images, 0.98)  # one chunk: today's path
    assert len(whole) >= 5
    monkeypatch.setattr(duplicates, "KEY_BLOCK", 13)  # the LSH keys in blocks of rows too
    for rows in (7, 50):
        chunked_pairs = near_duplicate_pairs(array_source(images), 0.98, chunk=rows)
        pd.testing.assert_frame_equal(chunked_pairs, whole)


# Recorded from the version that held every centred embedding as float32 (before the int8 filter
# and the exact rows in ExactRows): smooth_images(300, seed=9), every 7th image a copy, shifted
# or re-encoded, of the one 3 before it.
FIRST_PASS_GOLDEN = [(0, 3, 1.0), (14, 17, 1.0), (28, 31, 1.0), (42, 45, 1.0), (56, 59, 1.0), (63, 66, 0.980907),
                     (70, 73, 1.0), (84, 87, 1.0), (98, 101, 1.0), (112, 115, 1.0), (126, 129, 1.0),
                     (133, 136, 0.984862), (140, 143, 1.0), (154, 157, 1.0), (168, 171, 1.0), (175, 178, 0.980162),
                     (182, 185, 1.0), (196, 199, 1.0), (210, 213, 1.0), (224, 227, 1.0), (238, 241, 1.0),
                     (252, 255, 1.0), (266, 269, 1.0), (280, 283, 1.0), (294, 297, 1.0)]


@pytest.mark.parametrize("on_disk", [False, True])
def test_first_pass_pairs_are_those_of_the_float32_version(monkeypatch, on_disk):
    """The int8 filter lets every pair through that the float32 embeddings found, and the exact
    rows, in memory or read back from the temporary file a few at a time, give the same pairs."""
    images = smooth_images(300, seed=9)
    for k in range(3, 300, 7):
        images[k] = shifted(images[k - 3], 1, -1) if k % 2 else reencoded(images[k - 3])
    if on_disk:  # and the look-ups and comparisons in small pieces
        monkeypatch.setattr(chunked, "EXACT_IN_MEMORY_BYTES", 0)
        monkeypatch.setattr(chunked, "GATHER_ROWS", 5)
        monkeypatch.setattr(duplicates, "LOOKUP_CANDIDATES", 3)
        monkeypatch.setattr(duplicates, "SIMILARITY_BATCH", 2)
    got = near_duplicate_pairs(array_source(images), 0.98, chunk=17)
    assert [(int(a), int(b), float(v)) for a, b, v in got.itertuples(index=False)] == FIRST_PASS_GOLDEN


def test_label_issue_features_and_probabilities_are_the_same_bytes_in_chunks_and_on_disk(monkeypatch):
    images, y = class_images(20, 3, size=12, seed=2)
    whole = label_issues.kmeans_features(images, seed=0, sqrt=True)
    probs = label_issues.out_of_sample_probabilities(whole, y, 3, 5, seed=0)
    monkeypatch.setattr(label_issues, "CHUNK", 7)  # 7 images per feature chunk
    monkeypatch.setattr(chunked, "IN_MEMORY_BYTES", 1024)  # the table goes to a temporary file
    monkeypatch.setattr(chunked, "READ_ROWS_BYTES", 5 * 4 * 4 * label_issues.CENTROIDS)  # 5-row reads
    with label_issues.kmeans_features(array_source(images), seed=0, sqrt=True, store=True) as spilled:
        assert spilled.on_disk
        assert spilled[0:len(spilled)].tobytes() == whole.tobytes()
        assert label_issues.out_of_sample_probabilities(spilled, y, 3, 5, seed=0).tobytes() == probs.tobytes()


def test_row_store_on_disk_reads_back_what_was_written():
    data = np.random.default_rng(0).standard_normal((37, 5))
    with RowStore(37, 5, np.float64, in_memory_bytes=0) as store:
        for s in range(0, 37, 8):
            store[s : s + 8] = data[s : s + 8]
        assert store.on_disk and store.shape == (37, 5) and len(store) == 37
        for index in ([0, 1, 36], [3, 17, 18, 30], [20, 2, 9, 2]):  # sorted, spans, repeats out of order
            assert np.array_equal(store[np.array(index)], data[index])
        assert np.array_equal(store[5:23], data[5:23])


def test_checks_on_a_two_worker_dask_cluster_give_the_same_outputs(tmp_path, monkeypatch):
    """The checks' outputs only (no Great Expectations gate: it runs in this process either way),
    on 60 tiny images cut into chunks of 9: several tasks per map, finishing in any order."""
    pytest.importorskip("distributed")
    from imgpipe.validate.checks.loop import run_checks
    from imgpipe.validate.validation import check_engine, join_tables

    images, y = class_images(20, 3, size=12)
    images[7] = images[3]  # an exact duplicate
    images[30] = shifted(images[25], 1, 0)  # a near duplicate
    ids = [f"img/{i:03d}.png" for i in range(len(images))]
    manifest = write_preprocessed(tmp_path / "pre", images, ids, per_shard=25)
    rows = join_tables(manifest, write_labels(tmp_path / "lab", ids, list(y), ["a", "b", "c"]))
    rows["label_index"] = rows["label_index"].astype("int64")
    # Chunk bounds are cut here, in the driver, from these two; the workers only run the chunks.
    monkeypatch.setattr(chunked.rows_per_chunk, "__defaults__", (12 * 12 * 3 * 9, None))
    monkeypatch.setattr(label_issues, "CHUNK", 8)
    assert chunked.rows_per_chunk((12, 12, 3)) == 9  # (patching CHUNK_BYTES would not reach it)
    cfg = ValidateParams(ood={"min_images": 20})

    def checks(**engine):
        cfg_here = cfg.model_copy(update=engine)
        ctx = CheckContext(rows=rows, classes=["a", "b", "c"], cfg=cfg_here,
                           pixel_loader=ShardPixels(tmp_path / "pre").for_rows(rows))
        with check_engine(cfg_here, ctx) as ctx.engine:
            assert (ctx.engine is None) == (not engine)
            return run_checks(ctx)

    before = child_processes()
    here, there = checks(), checks(engine="dask", dask_workers=2)
    assert_no_new_children(before)  # the cluster started for the run is gone with it
    assert here.counters["near_duplicate_groups"] >= 1 and here.counters["exact_duplicate_groups"] >= 1
    assert (here.counters, here.detail, here.ran) == (there.counters, there.detail, there.ran)
    pd.testing.assert_frame_equal(here.findings, there.findings)
    assert np.array_equal(here.final, there.final) and np.array_equal(here.groups, there.groups)


def test_drawn_patches_are_the_patches_cut_out_all_at_once():
    images = np.random.default_rng(5).integers(0, 256, (6, 11, 9, 3), dtype=np.uint8)
    every = label_issues._patches(images, 4, 1)  # (n, 8, 6, 48)
    rng = np.random.default_rng(6)
    image, y, x = rng.integers(0, 6, 40), rng.integers(0, 8, 40), rng.integers(0, 6, 40)
    drawn = label_issues.drawn_patches(images, 4, image, y, x)
    assert drawn.dtype == np.uint8 and drawn.tobytes() == every[image, y, x].tobytes()
