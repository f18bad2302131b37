"""Fuzzing the URL-list reader (csv, tsv, jsonl, parquet, txt; plain or gzip) and the readers of
``source.json`` and ``classes.json``.

Property: a well-typed result, or one PipelineError line naming the file; never another exception."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
from fuzzing import outcome, scratch
from hypothesis import given
from hypothesis import strategies as st

from imgpipe.contracts import CLASSES_FILE, read_classes
from imgpipe.download.crawl_list import read_url_list
from imgpipe.rawdata import SOURCE_FILE, SourceInfo

NAME = "urls:lists/under-test"
CELL = st.one_of(st.sampled_from(["url", "label", "source", "http://127.0.0.1/a.png", "", ",", "\t", '"', "\n",
                                  "\x00", "é", "{", "[1]", "nan", "NULL", "1e400", "-0"]), st.text(max_size=6))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | CELL,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELL, inner, max_size=3),
                    max_leaves=8)


def check_list(data: bytes, fmt: str, gz: bool, label_column: str, extra: list[str]) -> None:
    with scratch() as tmp:
        path = tmp / "list"
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        urls, _ = outcome(lambda: read_url_list(path, NAME, fmt, "gzip" if gz else None, "url", label_column, extra),
                          NAME)
    if urls is not None:
        assert all(isinstance(u, str) for u in urls.urls)
        if label_column and fmt != "txt":  # a .txt list is URLs only, by design
            assert len(urls.labels) == len(urls.urls) and all(isinstance(x, str) for x in urls.labels)
        assert all(len(v) == len(urls.urls) and all(isinstance(x, str) for x in v) for v in urls.extras.values())


LABEL = st.sampled_from(["label", ""])
EXTRA = st.lists(st.sampled_from(["source", "label"]), max_size=1, unique=True)


@given(st.lists(st.lists(CELL, max_size=4), max_size=6), st.sampled_from(["csv", "tsv", "txt"]), st.booleans(),
       LABEL, EXTRA)
def test_delimited_and_txt_lists(rows, fmt, gz, label_column, extra):
    sep = "\t" if fmt == "tsv" else ","
    check_list("\n".join(sep.join(r) for r in rows).encode("utf-8", "surrogatepass"), fmt, gz, label_column, extra)


@given(st.lists(JSON, max_size=5), st.booleans(), LABEL, EXTRA)
def test_jsonl_lists(lines, gz, label_column, extra):
    check_list("\n".join(json.dumps(x) for x in lines).encode(), "jsonl", gz, label_column, extra)


@given(st.dictionaries(st.sampled_from(["url", "label", "source", "other"]),
                       st.sampled_from(["text", "int", "float", "list", "bytes", "none"]), max_size=4),
       st.integers(0, 4), LABEL, EXTRA, st.one_of(st.none(), st.integers(0, 400)))
def test_parquet_lists(columns, n, label_column, extra, cut):
    values = {"text": lambda i: f"http://127.0.0.1/{i}.png", "int": lambda i: i, "float": lambda i: i / 3,
              "list": lambda i: [i, i], "bytes": lambda i: b"\x00\xff", "none": lambda i: None}
    frame = pd.DataFrame({col: [values[kind](i) for i in range(n)] for col, kind in columns.items()})
    buf = io.BytesIO()
    frame.to_parquet(buf)
    data = buf.getvalue()
    check_list(data[:cut] if cut is not None else data, "parquet", False, label_column, extra)


@given(st.one_of(JSON.map(lambda x: json.dumps(x).encode()), st.binary(max_size=60),
                 st.fixed_dictionaries({"source": JSON, "kind": JSON, "layout": JSON},
                                       optional={"classes": JSON, "label_file": JSON, "extra": JSON,
                                                 "size_bytes": JSON, "url": JSON}).map(
                     lambda d: json.dumps(d).encode())))
def test_source_json(data):
    with scratch() as tmp:
        (tmp / SOURCE_FILE).write_bytes(data)
        info, _ = outcome(lambda: SourceInfo.read(tmp), SOURCE_FILE)
    if info is not None:  # what later stages rely on
        assert isinstance(info.source, str) and isinstance(info.kind, str)
        assert info.layout in ("files", "cifar10", "cifar100", "idx")
        assert info.classes is None or all(isinstance(c, str) for c in info.classes)
        assert info.label_file is None or isinstance(info.label_file, str)
        assert isinstance(info.extra, dict)
        assert info.size_bytes is None or type(info.size_bytes) is int


@given(st.one_of(JSON.map(lambda x: json.dumps(x).encode()), st.binary(max_size=40),
                 st.lists(CELL, max_size=4).map(lambda c: json.dumps({"classes": c}).encode())))
def test_classes_json(data):
    with scratch() as tmp:
        (tmp / CLASSES_FILE).write_bytes(data)
        classes, _ = outcome(lambda: read_classes(tmp), CLASSES_FILE)
    if classes is not None:
        assert all(isinstance(c, str) for c in classes)
