"""Every supported format, written the way real tools write it, imports to the same table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imgpipe.labels.importer import (
    import_labels,
    read_csv_labels,
    read_imagefolder_labels,
    read_label_studio_csv,
    read_label_studio_json,
    read_label_studio_json_min,
)
from imgpipe.labeltable import VOTE_COLUMNS

# A small ImageFolder-style source: split folders, class folders, unique file names.
TRUTH = {
    "train/cat/c1.png": "cat", "train/cat/c2.png": "cat", "train/dog/d1.png": "dog",
    "test/dog/d2.png": "dog", "test/bird/b1.png": "bird", "train/bird/b2.png": "bird",
}
CLASSES = ["bird", "cat", "dog"]
EXPECTED = pd.DataFrame({
    "item_id": sorted(TRUTH),
    "label": [TRUTH[i] for i in sorted(TRUTH)],
    "label_index": [CLASSES.index(TRUTH[i]) for i in sorted(TRUTH)],
    "annotators": 1,
    "agreement": 1.0,
})
UPLOAD_HEX = ["2f1a3b4c", "9e8d7c6b", "0a1b2c3d", "deadbeef", "c0ffee00", "12345678"]


def _upload(i: int, item: str) -> str:
    """How Label Studio names an uploaded file in data.image."""
    return f"/data/upload/1/{UPLOAD_HEX[i]}-{item.rsplit('/', 1)[-1]}"


def _ls_tasks(ls):
    items = sorted(TRUTH, reverse=True)  # file order need not follow ours
    return [
        ls.task(10 + i, _upload(i, item), [ls.annotation(100 + i, 1, [TRUTH[item]], task=10 + i)])
        for i, item in enumerate(items)
    ]


def write_csv(tmp_path, ls):
    rows = ["file,label", *(f"{item},{TRUTH[item]}" for item in sorted(TRUTH, reverse=True))]
    path = tmp_path / "labels.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())  # spreadsheet line endings
    return path, {}, "csv"


def write_tsv(tmp_path, ls):
    # Only file names, other column names, extra columns: the names are params.
    rows = ["filename\tclass\tnote", *(f"{item.rsplit('/', 1)[-1]}\t{TRUTH[item]}\tok" for item in TRUTH)]
    path = tmp_path / "labels.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path, {"file_column": "filename", "label_column": "class"}, "tsv"


def write_ls_json(tmp_path, ls):
    path = tmp_path / "project-1-at-2026-11-28-10-00-1a2b3c4d.json"
    path.write_text(json.dumps(_ls_tasks(ls), indent=1))
    return path, {}, "label-studio-json"


def write_ls_json_min(tmp_path, ls):
    path = tmp_path / "project-1-min.json"
    path.write_text(json.dumps(ls.json_min(_ls_tasks(ls)), indent=2))
    return path, {}, "label-studio-json-min"


def write_ls_csv(tmp_path, ls):
    path = tmp_path / "project-1.csv"
    path.write_text(ls.csv(_ls_tasks(ls)))
    return path, {}, "label-studio-csv"


def write_ls_tsv(tmp_path, ls):
    path = tmp_path / "project-1.tsv"
    path.write_text(ls.csv(_ls_tasks(ls), sep="\t"))
    return path, {}, "label-studio-csv"


WRITERS = [write_csv, write_tsv, write_ls_json, write_ls_json_min, write_ls_csv, write_ls_tsv]


@pytest.fixture
def folder_raw(make_raw, arrays):
    return make_raw({item: arrays.png(i) for i, item in enumerate(TRUTH)})


def _check(out, summary, fmt):
    labels = pd.read_parquet(out / "labels.parquet")
    pd.testing.assert_frame_equal(labels.drop(columns="label_source"), EXPECTED, check_dtype=False)
    assert json.loads((out / "classes.json").read_text()) == {"classes": CLASSES}
    assert pd.read_parquet(out / "issues.parquet").empty
    assert summary["metrics"]["format"] == fmt
    assert summary["metrics"]["labelled"] == len(TRUTH)


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__.removeprefix("write_"))
@pytest.mark.parametrize("given_format", [False, True], ids=["auto", "explicit"])
def test_each_format_imports_to_the_same_table(writer, given_format, folder_raw, tmp_path, cfg, ls):
    path, extra, fmt = writer(tmp_path, ls)
    params = cfg(path=str(path), format=fmt if given_format else "auto", **extra)
    summary = import_labels(folder_raw, tmp_path / "out", params)
    _check(tmp_path / "out", summary, fmt)
    assert summary["metrics"]["format_auto"] is not given_format
    assert summary["metrics"]["label_source"] == f"{fmt}:{path}"


def test_imagefolder_from_folder_names(folder_raw, tmp_path, cfg):
    summary = import_labels(folder_raw, tmp_path / "out", cfg())
    _check(tmp_path / "out", summary, "imagefolder")
    assert summary["metrics"]["format_auto"] is True
    assert "folder" in summary["format"]


def test_imagefolder_split_folder_is_not_a_class():
    votes = read_imagefolder_labels(["train/cat/1.png", "train/2.png", "3.png", "a/b/dog/4.png"])
    assert votes[["reference", "label"]].values.tolist() == [["train/cat/1.png", "cat"], ["a/b/dog/4.png", "dog"]]


def test_readers_share_one_normalised_vote_table(tmp_path, ls):
    """The pure readers: same columns; the three Label Studio exports give the same votes."""
    tables = {
        "csv": read_csv_labels(write_csv(tmp_path, ls)[0]),
        "tsv": read_csv_labels(write_tsv(tmp_path, ls)[0], sep="\t", file_column="filename", label_column="class"),
        "json": read_label_studio_json(write_ls_json(tmp_path, ls)[0]),
        "json-min": read_label_studio_json_min(write_ls_json_min(tmp_path, ls)[0]),
        "ls-csv": read_label_studio_csv(write_ls_csv(tmp_path, ls)[0]),
    }
    for table in tables.values():
        assert tuple(table.columns) == VOTE_COLUMNS
        assert len(table) == len(TRUTH)
        assert set(table["kind"]) == {"label"}

    def key(t):
        return sorted(t[["reference", "label", "annotator", "kind"]].itertuples(index=False, name=None))

    assert key(tables["json"]) == key(tables["json-min"]) == key(tables["ls-csv"])
    assert key(tables["json"])[0][2] == "1"  # completed_by 1, as str in every export


# ------------------------------------------------------------------------------- CIFAR and MNIST IDX

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_LABELS = {f"data_batch_{k}": [k, (k + 3) % 10] for k in range(1, 6)} | {"test_batch": [9, 0]}


@pytest.fixture
def cifar_raw(make_raw, arrays):
    files = {f"cifar-10-batches-py/{name}": arrays.cifar_batch(labels, seed=i)
             for i, (name, labels) in enumerate(CIFAR_LABELS.items())}
    return make_raw(files, layout="cifar10", classes=CIFAR_NAMES)


def test_cifar_layout_labels(cifar_raw, tmp_path, cfg):
    summary = import_labels(cifar_raw, tmp_path / "out", cfg())
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    expected = [(f"cifar-10-batches-py/{name}#{i}", CIFAR_NAMES[lab], lab)
                for name, labs in CIFAR_LABELS.items() for i, lab in enumerate(labs)]
    assert list(labels[["item_id", "label", "label_index"]].itertuples(index=False, name=None)) == expected
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["classes"] == CIFAR_NAMES
    assert summary["metrics"]["format"] == "cifar" and summary["metrics"]["classes_from"] == "source"


def test_cifar_batch_given_as_label_file(cifar_raw, tmp_path, cfg, arrays):
    """A relabelled batch: its labels replace the source's; the other batches have none."""
    fixed = tmp_path / "data_batch_2"
    fixed.write_bytes(arrays.cifar_batch([7, 7], seed=1))
    summary = import_labels(cifar_raw, tmp_path / "out", cfg(path=str(fixed)))
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert labels["item_id"].tolist() == ["cifar-10-batches-py/data_batch_2#0", "cifar-10-batches-py/data_batch_2#1"]
    assert labels["label"].tolist() == ["horse", "horse"]
    assert summary["metrics"]["format"] == "cifar"
    assert summary["metrics"]["problems"]["missing_label"]["count"] == 10


IDX_TRAIN = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
IDX_TEST = np.array([7, 2, 1], dtype=np.uint8)


@pytest.fixture
def idx_raw(make_raw, arrays):
    images = np.zeros((5, 4, 4), dtype=np.uint8)
    return make_raw({
        "train-images-idx3-ubyte.gz": arrays.idx_bytes(images),
        "train-labels-idx1-ubyte.gz": arrays.idx_bytes(IDX_TRAIN),
        "t10k-images-idx3-ubyte.gz": arrays.idx_bytes(images[:3]),
        "t10k-labels-idx1-ubyte.gz": arrays.idx_bytes(IDX_TEST),
    }, layout="idx")


def test_idx_layout_labels_keep_their_index(idx_raw, tmp_path, cfg):
    summary = import_labels(idx_raw, tmp_path / "out", cfg())
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    expected = [(f"train-images-idx3-ubyte.gz#{i}", str(v), int(v)) for i, v in enumerate(IDX_TRAIN)]
    expected += [(f"t10k-images-idx3-ubyte.gz#{i}", str(v), int(v)) for i, v in enumerate(IDX_TEST)]
    assert list(labels[["item_id", "label", "label_index"]].itertuples(index=False, name=None)) == expected
    # No class names in the source: class i is "i" (not the sorted labels seen), up to the largest.
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())["classes"]
    assert classes == [str(i) for i in range(10)]
    assert summary["metrics"]["format"] == "idx"


def test_idx_label_file_given_as_path(idx_raw, tmp_path, cfg, arrays):
    fixed = tmp_path / "t10k-labels-idx1-ubyte.gz"
    fixed.write_bytes(arrays.idx_bytes(np.array([3, 3, 3], dtype=np.uint8)))
    summary = import_labels(idx_raw, tmp_path / "out", cfg(path=str(fixed), on_missing_label="drop"))
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert labels["item_id"].tolist() == [f"t10k-images-idx3-ubyte.gz#{i}" for i in range(3)]
    assert labels["label"].tolist() == ["3", "3", "3"] and labels["label_index"].tolist() == [3, 3, 3]
    assert summary["metrics"]["format"] == "idx" and summary["metrics"]["format_auto"] is True
