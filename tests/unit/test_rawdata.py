import numpy as np
import pytest
from PIL import Image

from imgpipe.acquire import acquire
from imgpipe.errors import PipelineError, SourceError
from imgpipe.io import write_json
from imgpipe.params import DownloadParams
from imgpipe.rawdata import SourceInfo, list_items, split_of


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


def test_digits_source_is_written_as_pngs_plus_labels(tmp_path):
    info = acquire(DownloadParams(source="digits"), tmp_path / "raw")
    items = list_items(tmp_path / "raw")
    assert len(items) == 1797 and info.classes == [str(d) for d in range(10)]
    lines = (tmp_path / "raw" / "files" / "labels.csv").read_text().splitlines()
    assert lines[0] == "file,label" and lines[1] == "images/digit_0000.png,0"
    img = Image.open(tmp_path / "raw" / "files" / items[0].file)
    assert img.size == (8, 8) and img.mode == "L" and np.asarray(img).max() == 255


def test_digits_source_is_byte_identical_across_runs(tmp_path):
    acquire(DownloadParams(source="digits"), tmp_path / "a")
    acquire(DownloadParams(source="digits"), tmp_path / "b")
    for name in ["source.json", "files/labels.csv", "files/images/digit_1796.png"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_unknown_source_names_the_source_and_leaves_nothing(tmp_path):
    with pytest.raises(SourceError, match="'nope'"):
        acquire(DownloadParams(source="nope"), tmp_path / "raw")
    assert list(tmp_path.iterdir()) == []
