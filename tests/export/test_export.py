"""`imgpipe export`: each format loads with the library made for it (torchvision's ImageFolder,
Hugging Face `datasets`, `webdataset`), carries item ids and labels, and re-exports byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_project import CLASSES, build_project  # noqa: E402

from imgpipe.errors import PipelineError  # noqa: E402
from imgpipe.export import DATASET_FORMATS, ExportOptions, export_dataset  # noqa: E402
from imgpipe.rawdata import list_items, read_item_bytes  # noqa: E402


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return build_project(tmp_path_factory.mktemp("project"))


def expected(project) -> dict[str, tuple[str, str]]:
    """item_id -> (split, label) of the validated dataset."""
    df = project.dataset
    return {i: (s, lab) for i, s, lab in zip(df["item_id"], df["split"], df["label"], strict=True)}


def original_bytes(project) -> dict[str, bytes]:
    raw = project.path("data/raw")
    return {item.item_id: read_item_bytes(raw, item) for item in list_items(raw)}


def test_every_format_is_byte_identical_when_exported_again(project, tmp_path):
    for fmt in DATASET_FORMATS:
        first = export_dataset(project, fmt, tmp_path / fmt / "a", ExportOptions(shard_size=3))
        export_dataset(project, fmt, tmp_path / fmt / "b", ExportOptions(shard_size=3))
        assert first["images"] == len(project.dataset)
        a, b = tree_digest(tmp_path / fmt / "a"), tree_digest(tmp_path / fmt / "b")
        assert a and a == b, fmt


def test_imagefolder_loads_with_torchvision_and_keeps_the_source_bytes(project, tmp_path):
    from torchvision.datasets import ImageFolder

    out = tmp_path / "if"
    export_dataset(project, "imagefolder", out)
    want, raw = expected(project), original_bytes(project)
    seen = {}
    for row in (out / "metadata.csv").read_text().splitlines()[1:]:
        file_name, item_id, _source, split, label = row.split(",")
        assert file_name.startswith(f"{split}/{label}/")
        assert (out / file_name).read_bytes() == raw[item_id]  # the source's own file bytes
        seen[item_id] = (split, label)
    assert seen == want
    train = ImageFolder(str(out / "train"))
    assert train.classes == sorted(CLASSES)
    assert len(train) == sum(1 for s, _ in want.values() if s == "train")
    assert json.loads((out / "classes.json").read_text()) == {"classes": CLASSES}


def test_hf_loads_with_datasets_as_splits_with_a_classlabel(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    out = tmp_path / "hf"
    export_dataset(project, "hf", out)
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["train"].features["label"].names == CLASSES
    want, raw = expected(project), original_bytes(project)
    seen = {}
    for hf_split, split in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = loaded[hf_split].cast_column("image", datasets.Image(decode=False))
        for row in rows:
            assert row["image"]["bytes"] == raw[row["item_id"]]
            seen[row["item_id"]] = (split, CLASSES[row["label"]])
    assert seen == want


def test_webdataset_loads_with_webdataset_in_shards_of_the_given_size(project, tmp_path):
    import webdataset as wds

    out = tmp_path / "wds"
    summary = export_dataset(project, "webdataset", out, ExportOptions(shard_size=2))
    want, raw = expected(project), original_bytes(project)
    train_count = sum(1 for s, _ in want.values() if s == "train")
    assert len(summary["shards"]["train"]) == -(-train_count // 2)
    seen = {}
    for split in ("train", "val", "test"):
        urls = [str(out / name) for name in summary["shards"][split]]
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            meta = json.loads(sample["json"])
            assert sample["png"] == raw[meta["item_id"]]
            assert int(sample["cls"]) == CLASSES.index(meta["label"])
            seen[meta["item_id"]] = (split, meta["label"])
    assert seen == want


def test_an_array_source_exports_its_pixels_as_png(tmp_path):
    project = build_project(tmp_path / "p", per_class=2, layout="cifar10")
    out = tmp_path / "if"
    export_dataset(project, "imagefolder", out)
    rows = [r.split(",") for r in (out / "metadata.csv").read_text().splitlines()[1:]]
    assert {r[1] for r in rows} == set(project.dataset["item_id"])
    from imgpipe.preprocess.shards import gather

    df = project.dataset.set_index("item_id")
    file_name, item_id = rows[0][0], rows[0][1]
    pixels = gather(project.path("data/preprocessed"), np.array([df.loc[item_id, "shard"]]),
                    np.array([df.loc[item_id, "shard_offset"]]))[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO((out / file_name).read_bytes()))), pixels)


def test_a_non_empty_folder_is_refused_and_kept(project, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PipelineError, match="not empty"):
        export_dataset(project, "hf", out)
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(PipelineError, match="unknown export format"):
        export_dataset(project, "tfrecord", tmp_path / "x")
