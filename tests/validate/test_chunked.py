"""Bounded-memory validate (imgpipe.validate.chunked): the chunked paths give the same bytes as
the all-at-once ones (near-duplicate pairs, label-issue features and probabilities), features
spilled to disk read back exactly, and the checks' per-chunk work on a 2-worker Dask
LocalCluster gives the same stage outputs as in this process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imgpipe.io import read_parquet
from imgpipe.params.validate import ValidateParams
from imgpipe.validate import chunked, duplicates, label_issues
from imgpipe.validate.chunked import RowStore, ShardPixels, array_source
from imgpipe.validate.duplicates import near_duplicate_pairs
from imgpipe.validate.suite import load_suite
from imgpipe.validate.validation import validate_dataset

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


def _validate(tmp_path, **params):
    images, y = class_images(20, 3, size=12)
    images[7] = images[3]  # an exact duplicate
    images[30] = shifted(images[25], 1, 0)  # a near duplicate
    ids = [f"img/{i:03d}.png" for i in range(len(images))]
    pre = tmp_path / "pre"
    if not pre.exists():
        write_preprocessed(pre, images, ids, per_shard=25)
        write_labels(tmp_path / "lab", ids, list(y), ["a", "b", "c"])
    manifest = read_parquet(pre / "manifest.parquet")
    table = read_parquet(tmp_path / "lab" / "labels.parquet")
    spec = {"height": 12, "width": 12, "channels": 3}
    rejects = manifest.iloc[:0][["item_id", "source_path"]].assign(reason="")
    cfg = ValidateParams(**{"max_quarantine_fraction": 0.5, "ood": {"min_images": 20}, **params})
    return validate_dataset(manifest, table, read_parquet(tmp_path / "lab" / "issues.parquet"), ["a", "b", "c"],
                            rejects, load_suite("expectations/image_dataset.json"), cfg,
                            load_pixels=ShardPixels(pre), image_spec=spec, configured=spec)


@pytest.mark.skip(reason="hung for 15 min under pytest-xdist in the 2-core CI run (passes alone in ~20 s); "
                         "issue 20 stays open until the validate-on-Dask test runs in CI")
def test_checks_on_a_two_worker_dask_cluster_give_the_same_outputs(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(chunked, "CHUNK_BYTES", 12 * 12 * 3 * 9)  # 9 images per pixel chunk: several tasks
    monkeypatch.setattr(label_issues, "CHUNK", 8)
    here = _validate(tmp_path)
    there = _validate(tmp_path, engine="dask", dask_workers=2)
    assert here.quality == there.quality and here.detail == there.detail
    assert here.quality["near_duplicate_groups"] >= 1 and here.quality["exact_duplicate_groups"] >= 1
    pd.testing.assert_frame_equal(here.review, there.review)
    pd.testing.assert_frame_equal(here.dataset, there.dataset)
    # The sheets read their images on demand, by item.
    item = here.review["item_id"].iloc[0]
    assert np.array_equal(here.pixels[here.pixel_index[item]], there.pixels[there.pixel_index[item]])


def test_drawn_patches_are_the_patches_cut_out_all_at_once():
    images = np.random.default_rng(5).integers(0, 256, (6, 11, 9, 3), dtype=np.uint8)
    every = label_issues._patches(images, 4, 1)  # (n, 8, 6, 48)
    rng = np.random.default_rng(6)
    image, y, x = rng.integers(0, 6, 40), rng.integers(0, 8, 40), rng.integers(0, 6, 40)
    drawn = label_issues.drawn_patches(images, 4, image, y, x)
    assert drawn.dtype == np.uint8 and drawn.tobytes() == every[image, y, x].tobytes()
