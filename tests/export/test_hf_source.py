"""A Hugging Face parquet dataset as the download source: an `imgpipe export --format hf` read back
gives the same images, labels, classes and splits; told apart from a URL list by content."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_project import build_project, png  # noqa: E402

from imgpipe.download.acquire import acquire  # noqa: E402
from imgpipe.download.hf_parquet import is_hf_parquet, split_of_file  # noqa: E402
from imgpipe.errors import SourceError  # noqa: E402
from imgpipe.export import export_dataset  # noqa: E402
from imgpipe.params.download import DownloadParams  # noqa: E402
from imgpipe.params.preprocess import PreprocessParams  # noqa: E402
from imgpipe.rawdata import FILES_DIR, SourceInfo, list_items, read_item_bytes  # noqa: E402


def test_an_hf_export_read_back_as_a_source_keeps_images_labels_classes_and_splits(tmp_path):
    project = build_project(tmp_path / "p", classes=["zebra", "cat", "dog"])  # not sorted: order kept
    export_dataset(project, "hf", tmp_path / "hf")
    assert is_hf_parquet(str(tmp_path / "hf"))  # a local folder: by content, no prefix needed
    raw = tmp_path / "raw"
    info = acquire(DownloadParams(source=f"hf:{tmp_path / 'hf'}"), raw)
    assert info.classes == ["zebra", "cat", "dog"] and info.kind == "hf-parquet"
    assert SourceInfo.read(raw).label_file == "labels.csv"

    items = {item.item_id: item for item in list_items(raw)}
    df = project.dataset
    want = {i: (s, lab) for i, s, lab in zip(df["item_id"], df["split"], df["label"], strict=True)}
    assert set(items) == set(want)  # the exported ids, not prefixed: the split is data
    assert {i: item.source_split for i, item in items.items()} == {i: s for i, (s, _) in want.items()}
    with open(raw / FILES_DIR / "labels.csv", newline="") as fh:
        labels = {row["file"]: row["label"] for row in csv.DictReader(fh)}
    assert labels == {i: lab for i, (_, lab) in want.items()}
    original = project.path("data/raw")
    by_id = {item.item_id: item for item in list_items(original)}
    for item_id, item in items.items():
        assert read_item_bytes(raw, item) == read_item_bytes(original, by_id[item_id])

    # The labels stage reads the source's own labels and classes from it.
    from imgpipe.labels.importer import import_labels
    from imgpipe.params.labels import LabelsParams
    from imgpipe.preprocess.pipeline import preprocess_images

    preprocess_images(raw, tmp_path / "pre", PreprocessParams(size=(12, 12), workers=1), progress=False)
    import_labels(raw, tmp_path / "labels", LabelsParams())
    imported = pd.read_parquet(tmp_path / "labels/labels.parquet")
    assert dict(zip(imported["item_id"], imported["label"], strict=True)) == {i: lab for i, (_, lab) in want.items()}
    assert json.loads((tmp_path / "labels/classes.json").read_text())["classes"] == ["zebra", "cat", "dog"]

    again = tmp_path / "raw2"
    acquire(DownloadParams(source=str(tmp_path / "hf")), again)  # the same bytes, whatever the spelling
    assert (again / "packed/images-00000.tar").read_bytes() == (raw / "packed/images-00000.tar").read_bytes()


def test_a_parquet_without_ids_gets_file_and_row_ids_and_a_url_list_stays_a_url_list(tmp_path):
    table = pa.table({"image": [{"bytes": png(_pixels(k)), "path": None} for k in range(3)],
                      "label": pa.array(["b", "a", "b"])})
    (tmp_path / "ds").mkdir()
    pq.write_table(table, tmp_path / "ds/test-00000-of-00001.parquet")
    info = acquire(DownloadParams(source=str(tmp_path / "ds/test-00000-of-00001.parquet")), tmp_path / "raw")
    items = list_items(tmp_path / "raw")
    assert [item.item_id for item in items] == [f"test-00000-of-00001/{r:06d}.png" for r in range(3)]
    assert {item.source_split for item in items} == {"test"}
    assert info.classes is None  # plain text labels: the labels stage infers the classes
    urls = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["http://127.0.0.1:9/a.png"]}), urls)
    assert not is_hf_parquet(str(urls)) and not is_hf_parquet("https://example.invalid/data.parquet")
    assert is_hf_parquet("hf:https://example.invalid/data.parquet")
    assert split_of_file("data/validation-00000-of-00001.parquet") == "val"


def test_an_unsafe_item_id_is_one_clear_error(tmp_path):
    table = pa.table({"image": [{"bytes": png(_pixels(0)), "path": "x.png"}], "item_id": ["../../etc/x.png"]})
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(SourceError, match=r"train\.parquet.*not a relative path"):
        acquire(DownloadParams(source=f"hf:{tmp_path / 'train.parquet'}"), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def _pixels(k: int):
    import numpy as np

    return np.full((4, 4, 3), 40 * k, dtype=np.uint8)

