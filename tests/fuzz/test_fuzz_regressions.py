"""Each defect the fuzz properties found, pinned as a plain example (fails before its fix)."""

from __future__ import annotations

import json
import struct

import pytest

from imgpipe.errors import LabelError
from imgpipe.labels.formats import read_csv_labels, read_idx_labels
from imgpipe.labelstudio.read import read_label_studio_json_min


def _one_line(exc_info, name: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and name in message, message
    return message


def test_user_text_with_a_line_break_stays_inside_one_line(tmp_path):
    # A JSON-MIN choice whose key holds a line break printed a two-line error.
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"image": "a.png", "choice": {"\n": None}, "id": 1, "annotator": 1,
                                 "annotation_id": 2}]))
    with pytest.raises(LabelError) as exc:
        read_label_studio_json_min(path)
    assert "keys: '\\n'" in _one_line(exc, str(path))
    # A CSV header cell with a line break, named in the missing-column line.
    path = tmp_path / "labels.csv"
    path.write_text('"fi\nle",label\na.png,cat\n')
    with pytest.raises(LabelError) as exc:
        read_csv_labels(path)
    assert "columns: 'fi\\nle', label" in _one_line(exc, str(path))


@pytest.mark.parametrize("dims", [(2**32 - 1, 2**32 - 1, 0, 2**32 - 1), (2**32 - 1,) * 3])
def test_idx_header_with_impossible_dimensions_is_one_line(tmp_path, dims):
    # (n, n, 0, n): numpy's reshape raised ValueError; the int64 size product could also wrap.
    from imgpipe.arrayfiles import load_idx
    from imgpipe.errors import SourceError

    path = tmp_path / "x-idx"
    path.write_bytes(bytes([0, 0, 0x0D, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
    with pytest.raises(SourceError, match="impossible shape|over the"):
        load_idx(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5, 1e300])
def test_idx_float_labels_that_are_no_class_number_are_refused(tmp_path, value):
    # A NaN label became class -9223372036854775808 with only a numpy RuntimeWarning.
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x0E, 1]) + struct.pack(">I", 2) + struct.pack(">2d", 1.0, value))
    with pytest.raises(LabelError, match=r"IDX label 1 is .*, not a class number"):
        read_idx_labels(path, "train-images-idx3-ubyte", ("cat", "dog"))


def _zip_with_name(name: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), b"x")
    return buf.getvalue()


def _zip_needing_version(version: int) -> bytes:
    data = bytearray(_zip_with_name("a.txt"))
    central = data.rfind(b"PK\x01\x02")
    data[4] = data[central + 6] = version  # "version needed to extract", local and central
    return bytes(data)


@pytest.mark.parametrize("data,match", [
    # A zip asking for a version zipfile does not implement: NotImplementedError.
    (_zip_needing_version(164), "unsupported zip: zip file version 16.4"),
    # A gzip cut inside its header: tarfile raised TypeError (ord() of an empty string).
    (b"\x1f\x8b\x08", "corrupt or truncated archive"),
    # A zip member with an empty name: zipfile raised IndexError.
    (_zip_with_name(""), "member #1 has an empty name"),
    # A zip whose UTF-8 flag is set on a name that is not UTF-8: UnicodeDecodeError.
    (_zip_with_name("é.png").replace("é".encode(), b"\xf9\xff"), "corrupt or truncated zip"),
], ids=["zip-version", "gzip-cut-in-header", "zip-empty-name", "zip-name-not-utf8"])
def test_archives_that_broke_the_standard_readers_are_one_line(tmp_path, data, match):
    from imgpipe.download.extract import Budget, extract_archive
    from imgpipe.errors import SourceError

    archive = tmp_path / "a.bin"
    archive.write_bytes(data)
    with pytest.raises(SourceError, match=match) as exc:
        extract_archive(archive, tmp_path / "out", Budget("src.zip", 1 << 20, 10))
    _one_line(exc, "src.zip")


@pytest.mark.parametrize("data,match", [
    (b'{"source": null, "kind": null, "layout": null}', "'source' and 'kind' must be text"),
    (b'{"source": "s", "kind": "path", "layout": "files", "classes": [1, 2]}', "'classes' must be a list of names"),
    (b'{"source": "s", "kind": "path", "layout": "files", "\\n": 1}', r"unknown field '\\n'"),
    (b"\xb8O\xeb", r"not UTF-8 text \(byte 0\)"),
], ids=["null-fields", "class-numbers", "key-with-line-break", "not-utf8"])
def test_source_json_with_wrong_types_is_one_line(tmp_path, data, match):
    # Null fields were taken (and failed stages later); a non-UTF-8 file was a UnicodeDecodeError.
    from imgpipe.errors import PipelineError
    from imgpipe.rawdata import SourceInfo

    (tmp_path / "source.json").write_bytes(data)
    with pytest.raises(PipelineError, match=match) as exc:
        SourceInfo.read(tmp_path)
    _one_line(exc, "source.json")


def test_classes_json_not_utf8_is_one_line(tmp_path):
    from imgpipe.contracts import read_classes
    from imgpipe.errors import PipelineError

    (tmp_path / "classes.json").write_bytes(b"\xb8O\xeb")
    with pytest.raises(PipelineError, match=r"classes\.json: corrupt or truncated \(not UTF-8 text") as exc:
        read_classes(tmp_path)
    _one_line(exc, "classes.json")
