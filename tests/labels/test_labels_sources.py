"""Where labels come from (auto detection, paths, URLs), malformed files, and the stage script."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pandas as pd
import pytest
import yaml

from imgpipe.errors import LabelError
from imgpipe.labels.importer import import_labels
from imgpipe.params.download import DownloadParams

IMAGES = ["images/one.png", "images/two.png"]
GOOD_CSV = "file,label\nimages/one.png,cat\nimages/two.png,dog\n"


@pytest.fixture
def raw(make_raw, arrays):
    return make_raw({item: arrays.png() for item in IMAGES})


def _write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# ---------------------------------------------------------------------------------- malformed files

MALFORMED = [
    ("empty.csv", "", "auto", "empty.csv: empty label file"),
    ("blank.csv", "\n  \n", "csv", "blank.csv: empty label file"),
    ("header.csv", "file,label\n", "auto", "header.csv: no label rows (only a header: file,label)"),
    ("ragged.csv", "file,label\nimages/one.png,cat,extra\n", "auto",
     "ragged.csv: malformed CSV: line 2 has 3 fields, the header has 2"),
    ("quote.csv", 'file,label\n"images/one.png,cat\n', "csv", "quote.csv: malformed CSV: line 2: unexpected end of data (a quote"),
    ("cols.csv", "path,class\nimages/one.png,cat\n", "auto",
     "cols.csv: no column 'file' (columns: path, class); set labels.file_column"),
    ("tabs.csv", "file\tlabel\nimages/one.png\tcat\n", "csv", "the header looks tab-separated: set labels.format"),
    ("dict.json", '{"images/one.png": "cat"}', "auto", "dict.json: JSON but not a Label Studio export (a dict"),
    ("records.json", '[{"file": "images/one.png", "label": "cat"}]', "auto",
     "records.json: JSON but not a Label Studio export: expected tasks"),
    ("broken.json", '[{"id": 1, "data": {"image": "x.png"}', "auto", "broken.json: not valid JSON:"),
    ("nodata.json", '[{"id": 1, "annotations": []}]', "label-studio-json",
     "nodata.json: task #1 has no 'data' object: not a Label Studio JSON export"),
    ("empty.json", "[]", "auto", "empty.json: empty Label Studio export (no tasks)"),
    ("csv-as.json", GOOD_CSV, "label-studio-json", "csv-as.json: not valid JSON"),
    ("min.json", '[{"id": 1, "image": "a.png"}]', "label-studio-json-min",
     "min.json: record #1 is not a JSON-MIN record"),
    ("lscsv.csv", GOOD_CSV, "label-studio-csv", "lscsv.csv: no column 'annotation_id': not a Label Studio CSV"),
    ("binary.csv", bytes(range(256)), "auto", "binary.csv: not UTF-8 text"),
    ("bad.pickle", b"\x80\x04\x95garbage", "auto", "bad.pickle: unsafe or corrupt pickle: pickle data was truncated"),
    ("evil.pickle", b"\x80\x02cos\nsystem\n.", "cifar", "evil.pickle: unsafe or corrupt pickle: refused global"),
    ("bad.idx", b"\x00\x00\x08\x01\x00\x00\x00\x09\x01", "auto", "bad.idx: IDX payload is 1 bytes"),
]


@pytest.mark.parametrize(("name", "content", "fmt", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_label_files_raise_a_clear_error(name, content, fmt, message, raw, tmp_path, cfg):
    path = _write(tmp_path, name, content)
    with pytest.raises(LabelError) as err:
        import_labels(raw, tmp_path / "out", cfg(path=str(path), format=fmt))
    assert str(err.value).startswith(str(tmp_path)), "the message names the file"
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_blank_spreadsheet_rows_are_ignored(raw, tmp_path, cfg):
    path = _write(tmp_path, "sheet.csv", "file,label\r\nimages/one.png,cat\r\n,\r\nimages/two.png,dog\r\n,\r\n")
    summary = import_labels(raw, tmp_path / "out", cfg(path=str(path)))
    assert summary["metrics"]["labelled"] == 2 and summary["metrics"]["problems"]["orphan_label"]["count"] == 0


def test_missing_label_file(raw, tmp_path, cfg):
    with pytest.raises(LabelError, match=r"nope\.csv: label file not found"):
        import_labels(raw, tmp_path / "out", cfg(path=str(tmp_path / "nope.csv")))


def test_labels_naming_no_image_at_all(raw, tmp_path, cfg):
    path = _write(tmp_path, "other.csv", "file,label\nzzz.png,cat\n")
    with pytest.raises(LabelError, match=r"other\.csv: no labels for any of the 2 images \(e\.g\. 'zzz\.png'"):
        import_labels(raw, tmp_path / "out", cfg(path=str(path)))


def test_conflicting_params_are_refused(make_raw, arrays, raw, tmp_path, cfg):
    path = _write(tmp_path, "labels.csv", GOOD_CSV)
    with pytest.raises(LabelError, match="labels.format is imagefolder .* but labels.path is set"):
        import_labels(raw, tmp_path / "out", cfg(path=str(path), format="imagefolder"))
    with pytest.raises(LabelError, match="labels.format is csv, but labels.path is empty and the source ships no"):
        import_labels(raw, tmp_path / "out", cfg(format="csv"))
    cifar = make_raw({"cifar-10-batches-py/x": b""}, name="cifar", layout="cifar10")
    with pytest.raises(LabelError, match="keeps its labels in cifar files"):
        import_labels(cifar, tmp_path / "out", cfg(format="csv"))


# ---------------------------------------------------------------------------------------- auto order


def test_auto_uses_the_label_file_source_json_names(make_raw, arrays, tmp_path, cfg):
    raw = make_raw({**{i: arrays.png() for i in IMAGES}, "labels.csv": GOOD_CSV, "other.json": "[]"},
                   label_file="labels.csv")
    summary = import_labels(raw, tmp_path / "out", cfg())
    assert summary["metrics"]["format"] == "csv"
    assert "source.json" in summary["metrics"]["format_reason"]
    assert summary["format"].startswith("csv (auto: ")


def test_auto_uses_the_only_top_level_label_file(make_raw, arrays, tmp_path, cfg, ls):
    tasks = [ls.task(1, "/data/upload/1/abcdef12-one.png", [ls.annotation(1, 1, ["cat"], task=1)]),
             ls.task(2, "/data/upload/1/abcdef12-two.png", [ls.annotation(2, 1, ["dog"], task=2)])]
    raw = make_raw({**{i: arrays.png() for i in IMAGES}, "export.json": json.dumps(ls.json_min(tasks))})
    summary = import_labels(raw, tmp_path / "out", cfg())
    assert summary["metrics"]["format"] == "label-studio-json-min"
    assert summary["metrics"]["label_source"] == "label-studio-json-min:export.json"
    assert summary["metrics"]["labelled"] == 2


def test_auto_falls_back_to_folders_with_several_label_files(make_raw, arrays, tmp_path, cfg):
    raw = make_raw({"cat/1.png": arrays.png(), "dog/2.png": arrays.png(), "a.csv": GOOD_CSV, "b.csv": GOOD_CSV})
    summary = import_labels(raw, tmp_path / "out", cfg())
    assert summary["metrics"]["format"] == "imagefolder"
    assert pd.read_parquet(tmp_path / "out" / "labels.parquet")["label"].tolist() == ["cat", "dog"]


# ----------------------------------------------------------------------------------------------- URL


def test_label_file_from_a_url(raw, tmp_path, cfg):
    served = tmp_path / "served"
    served.mkdir()
    _write(served, "labels.csv", GOOD_CSV)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/labels.csv"
        download = DownloadParams(cache_dir=tmp_path / "cache", retries=1, timeout_s=5)
        summary = import_labels(raw, tmp_path / "out", cfg(path=url), download)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["metrics"]["label_source"] == f"csv:{url}"
    assert pd.read_parquet(tmp_path / "out" / "labels.parquet")["label"].tolist() == ["cat", "dog"]


# --------------------------------------------------------------------------------------- stage script


def _project(tmp_path, raw, labels: dict) -> None:
    params = {"paths": {"raw": str(raw), "labels": "data/labels"}, "labels": labels}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def test_stage_writes_outputs_and_metrics(raw, tmp_path, monkeypatch, capsys):
    from stages.labels import main

    _write(tmp_path, "labels.csv", GOOD_CSV)
    _project(tmp_path, raw, {"path": "labels.csv"})
    monkeypatch.chdir(tmp_path)
    main()
    err = capsys.readouterr().err
    assert "labels: done in" in err and "labelled: 2" in err and "format: csv (auto: " in err
    metrics = json.loads((tmp_path / "metrics" / "labels.json").read_text())
    assert metrics["labelled"] == 2 and metrics["format"] == "csv" and metrics["classes"] == 2
    assert set(metrics["problems"]) >= {"missing_label", "tie", "unreviewed"}
    assert sorted(p.name for p in (tmp_path / "data" / "labels").iterdir()) == [
        "annotators.json", "boxes.parquet", "classes.json", "crops.parquet", "issues.parquet", "labels.parquet"]


@pytest.mark.parametrize(("content", "words"), [
    ("", "empty label file"),
    ("file,label\nimages/one.png,cat\nimages/two.png,banana\n", "unknown class"),
    ("file,label\nimages/one.png,cat,x\n", "malformed CSV"),
])
def test_stage_failure_is_one_line_not_a_traceback(content, words, raw, tmp_path, monkeypatch, capsys):
    from stages.labels import main

    _write(tmp_path, "labels.csv", content)
    _project(tmp_path, raw, {"path": "labels.csv", "classes": ["cat", "dog"], "on_unknown_class": "fail"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    # One line for the failure; before it only the line that says which format is being read.
    failures = [line for line in err.splitlines() if line.strip() and not line.startswith("labels: reading ")]
    assert len(failures) == 1 and failures[0].startswith("labels failed: labels.csv: ") and words in failures[0], err
