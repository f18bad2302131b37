import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from imgpipe.download.acquire import acquire
from imgpipe.errors import PipelineError, SourceError
from imgpipe.io import write_json
from imgpipe.params.download import DownloadParams
from imgpipe.rawdata import SourceInfo, list_items, pack_images, read_item_bytes, split_of


def test_split_of_reads_the_first_folder_only():
    assert split_of("train/cat/1.png") == "train"
    assert split_of("Validation/dog/2.jpg") == "val"
    assert split_of("test.png") == ""
    assert split_of("cats/train/1.png") == ""


def test_list_items_skips_label_files_hidden_files_and_keeps_order(tmp_path):
    files = tmp_path / "files"
    for rel in ["b/2.png", "a/1.png", "a/notes.txt", ".hidden/x.png", "__MACOSX/a/._1.png", "labels.csv",
                "a/odd.bin"]:
        (files / rel).parent.mkdir(parents=True, exist_ok=True)
        (files / rel).write_bytes(b"x")
    write_json(tmp_path / "source.json", SourceInfo(source="s", kind="path", layout="files").to_json())
    assert [i.item_id for i in list_items(tmp_path)] == ["a/1.png", "a/odd.bin", "b/2.png"]


def test_missing_source_json_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="source.json: missing"):
        list_items(tmp_path)


def test_digits_source_is_pngs_in_a_pack_plus_labels(tmp_path):
    info = acquire(DownloadParams(source="digits"), tmp_path / "raw")
    items = list_items(tmp_path / "raw")
    assert len(items) == 1797 and info.classes == [str(d) for d in range(10)]
    assert info.extra["packed"] == {"packed_images": 1797, "packs": 1}
    lines = (tmp_path / "raw" / "files" / "labels.csv").read_text().splitlines()
    assert lines[0] == "file,label" and lines[1] == "images/digit_0000.png,0"
    img = Image.open(io.BytesIO(read_item_bytes(tmp_path / "raw", items[0])))
    assert img.size == (8, 8) and img.mode == "L" and np.asarray(img).max() == 255
    # The pack is a plain tar: standard tools list and extract the same PNGs.
    with tarfile.open(tmp_path / "raw" / "packed" / "images-00000.tar") as tar:
        assert tar.getnames()[:2] == ["images/digit_0000.png", "images/digit_0001.png"]
        assert tar.extractfile(items[5].file).read() == read_item_bytes(tmp_path / "raw", items[5])
    assert sorted(p.name for p in (tmp_path / "raw" / "files").iterdir()) == ["labels.csv"]


def test_pack_images_bounds_pack_size_and_keeps_sidecars(tmp_path):
    files = tmp_path / "files"
    for i in range(7):
        (files / "cls").mkdir(parents=True, exist_ok=True)
        (files / "cls" / f"{i}.png").write_bytes(bytes([i]) * 1000)
    (files / "labels.csv").write_text("file,label\n")
    write_json(tmp_path / "source.json", SourceInfo(source="s", kind="path", layout="files").to_json())
    assert pack_images(tmp_path, max_pack_bytes=2500) == {"packed_images": 7, "packs": 4}
    items = list_items(tmp_path)
    assert [i.pack for i in items] == [0, 0, 1, 1, 2, 2, 3]
    assert [read_item_bytes(tmp_path, i) for i in items] == [bytes([i]) * 1000 for i in range(7)]
    assert [p.name for p in files.iterdir()] == ["labels.csv"]


def test_a_split_recorded_in_the_pack_index_wins_over_the_path(tmp_path):
    import contextlib

    import pyarrow.parquet as pq

    from imgpipe.rawdata import write_packs

    write_json(tmp_path / "source.json", SourceInfo(source="s", kind="path", layout="files").to_json())
    members = [("images/a.png", 1), ("train/b.png", 1), ("test/c.png", 1)]
    write_packs(tmp_path, members, lambda i: contextlib.nullcontext(b"x"))
    assert "source_split" not in pq.read_schema(tmp_path / "packed/index.parquet").names  # as before
    assert [i.source_split for i in list_items(tmp_path)] == ["", "train", "test"]
    write_packs(tmp_path, members, lambda i: contextlib.nullcontext(b"x"),
                splits={"images/a.png": "val", "train/b.png": "test"})
    assert [i.source_split for i in list_items(tmp_path)] == ["val", "test", ""]


def test_digits_source_is_byte_identical_across_runs(tmp_path):
    acquire(DownloadParams(source="digits"), tmp_path / "a")
    acquire(DownloadParams(source="digits"), tmp_path / "b")
    for name in ["source.json", "files/labels.csv", "packed/images-00000.tar", "packed/index.parquet"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_unknown_source_names_the_source_and_leaves_nothing(tmp_path):
    with pytest.raises(SourceError, match="'nope'"):
        acquire(DownloadParams(source="nope"), tmp_path / "raw")
    assert list(tmp_path.iterdir()) == []


def _idx_bytes(array: np.ndarray) -> bytes:
    import gzip
    import struct

    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def test_array_layout_listing_uses_recorded_counts_without_loading(tmp_path):
    from imgpipe.rawdata import ARRAY_COUNTS, IDX_FILES

    files = tmp_path / "files"
    files.mkdir()
    sizes = {"train": 5, "test": 3}
    for image_file, label_file, split in IDX_FILES:
        (files / image_file).write_bytes(_idx_bytes(np.zeros((sizes[split], 4, 4))))
        (files / label_file).write_bytes(_idx_bytes(np.zeros(sizes[split])))
    plain = SourceInfo(source="mnist", kind="official", layout="idx")
    write_json(tmp_path / "source.json", plain.to_json())
    loaded = list_items(tmp_path)
    assert [i.item_id for i in loaded[4:6]] == ["train-images-idx3-ubyte.gz#4", "t10k-images-idx3-ubyte.gz#0"]
    counted = SourceInfo(source="mnist", kind="official", layout="idx",
                         extra={ARRAY_COUNTS: {f: sizes[s] for f, _l, s in IDX_FILES}})
    write_json(tmp_path / "source.json", counted.to_json())
    for image_file, _label_file, _split in IDX_FILES:
        (files / image_file).write_bytes(b"")  # unreadable now: listing must not open it
    assert list_items(tmp_path) == loaded
