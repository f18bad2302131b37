"""Fuzzing the label readers: CSV/TSV, Label Studio JSON/JSON-MIN/CSV, CIFAR pickles, IDX headers.

Property: a votes table, or one LabelError line naming the file; never another exception."""

from __future__ import annotations

import csv
import io
import json
import pickle
import struct

import numpy as np
from fuzzing import outcome, scratch
from hypothesis import given
from hypothesis import strategies as st

from imgpipe.labels.formats import detect_format, read_cifar_labels, read_csv_labels, read_idx_labels
from imgpipe.labelstudio.read import read_label_studio_csv, read_label_studio_json, read_label_studio_json_min
from imgpipe.labeltable import VOTE_COLUMNS

NAME = "annotations/labels-under-test"
# Characters that break naive parsers: separators, quotes, line ends, NUL, a BOM, brackets, non-ASCII.
TRICKY = st.sampled_from([",", "\t", '"', "'", "\n", "\r", "\r\n", "\x00", "\ufeff", "{", "[", "]", "}", " ",
                          "é", "猫", "\\", "#", "=", "cat", "dog", "file", "label", "image", "choice",
                          "annotator", "annotation_id", "id", "a.png", "/data/upload/1/x.png"])
TEXT = st.lists(st.one_of(TRICKY, st.text(max_size=5)), max_size=12).map("".join)


def read_as(fmt: str, path, name: str = NAME):
    """The reader the importer would use for ``fmt`` (array formats with a made-up image file)."""
    readers = {
        "csv": lambda: read_csv_labels(path, name=name),
        "tsv": lambda: read_csv_labels(path, sep="\t", name=name),
        "label-studio-json": lambda: read_label_studio_json(path, name=name),
        "label-studio-json-min": lambda: read_label_studio_json_min(path, name=name),
        "label-studio-csv": lambda: read_label_studio_csv(path, name=name),
        "cifar": lambda: read_cifar_labels(path, ("cat", "dog"), name=name),
        "idx": lambda: read_idx_labels(path, "train-images-idx3-ubyte", ("cat", "dog"), name=name),
    }
    return readers[fmt]()


def check_detect_and_read(data: bytes) -> None:
    with scratch() as tmp:
        path = tmp / "labels"
        path.write_bytes(data)
        fmt, _ = outcome(lambda: detect_format(path, NAME), NAME)
        formats = [fmt] if fmt else ["csv", "tsv", "label-studio-json", "label-studio-csv"]
        for each in formats:
            votes, _ = outcome(lambda each=each: read_as(each, path), NAME)
            if votes is not None:
                assert tuple(votes.columns) == VOTE_COLUMNS


@given(st.binary(max_size=300))
def test_any_bytes(data):
    check_detect_and_read(data)


@given(st.lists(st.lists(TEXT, min_size=1, max_size=4), min_size=1, max_size=6), st.sampled_from([",", "\t"]))
def test_csv_shaped_text(rows, sep):
    check_detect_and_read(sep.join(["file", "label"]).encode() + b"\n" + "\n".join(sep.join(r) for r in rows).encode())


@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=8), st.sampled_from([",", "\t"]))
def test_csv_round_trip(rows, sep):
    # A file the csv module writes is read back to the same votes (labels stripped, blank rows skipped).
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep)
    writer.writerow(["file", "label"])
    writer.writerows(rows)
    with scratch() as tmp:
        path = tmp / "labels.csv"
        path.write_text(buf.getvalue(), encoding="utf-8")
        votes, error = outcome(lambda: read_csv_labels(path, sep=sep, name=NAME), NAME)
    kept = [(f, lab) for f, lab in rows if f.strip() or lab.strip()]
    if votes is None:
        # Only what the format cannot carry is refused: no rows left, or a NUL / a lone \r in a field.
        assert not kept or any(c in f + lab for f, lab in kept for c in "\x00\r"), error
        return
    expected = [(f.strip(), lab.strip()) for f, lab in kept]
    assert list(zip(votes["reference"], votes["label"], strict=True)) == expected


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def maybe(strategy):
    return st.one_of(strategy, JSON)


CHOICES = maybe(st.fixed_dictionaries({"choices": maybe(st.lists(maybe(TEXT), max_size=3))}))
RESULT = maybe(st.fixed_dictionaries({"type": maybe(st.just("choices")), "from_name": maybe(st.just("choice")),
                                      "to_name": st.just("image"), "value": CHOICES}))
ANNOTATION = maybe(st.fixed_dictionaries(
    {"id": maybe(st.integers(0, 99)), "completed_by": maybe(st.integers(0, 3)),
     "result": maybe(st.lists(RESULT, max_size=2)), "was_cancelled": maybe(st.booleans())}))
TASK = maybe(st.fixed_dictionaries(
    {"id": maybe(st.integers(0, 99)), "data": maybe(st.fixed_dictionaries({"image": maybe(TEXT)})),
     "annotations": maybe(st.lists(ANNOTATION, max_size=3)),
     "predictions": maybe(st.lists(maybe(st.fixed_dictionaries({"result": st.lists(RESULT, max_size=1)})),
                                   max_size=2))}))
RECORD = maybe(st.fixed_dictionaries(
    {"image": maybe(TEXT), "choice": maybe(st.one_of(TEXT, CHOICES)), "id": maybe(st.integers(0, 99)),
     "annotator": maybe(st.integers(0, 3)), "annotation_id": maybe(st.integers(0, 99))}))


@given(st.lists(TASK, max_size=4))
def test_label_studio_json(tasks):
    check_detect_and_read(json.dumps(tasks).encode())


@given(st.lists(RECORD, max_size=4))
def test_label_studio_json_min_and_csv(records):
    check_detect_and_read(json.dumps(records).encode())
    keys = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(keys or ["annotator", "annotation_id"])
    for r in records:
        if isinstance(r, dict):
            writer.writerow([json.dumps(r.get(k)) if isinstance(r.get(k), dict | list) else r.get(k, "")
                             for k in keys])
    check_detect_and_read(buf.getvalue().encode())


BATCH_VALUE = st.one_of(
    st.lists(st.integers(-3, 300), max_size=4), st.binary(max_size=8), st.integers(), st.text(max_size=4),
    st.builds(lambda n, w: np.zeros((n, w), dtype=np.uint8), st.integers(0, 3), st.sampled_from([0, 3072, 5])),
    st.builds(lambda xs: np.array(xs), st.lists(st.floats(allow_nan=True), max_size=3)),
)


@given(st.dictionaries(st.sampled_from([b"data", b"labels", b"fine_labels", b"filenames", b"coarse_labels",
                                        "data", "labels", b"x"]), BATCH_VALUE, max_size=5),
       st.integers(0, 4), st.binary(max_size=4))
def test_cifar_batch(obj, protocol, tail):
    # Protocol 0-4 pickles of batch-like dicts, sometimes with bytes appended.
    check_detect_and_read(pickle.dumps(obj, protocol=max(protocol, 2)) + tail)


@given(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07]),
       st.lists(st.one_of(st.integers(0, 6), st.just(2**32 - 1), st.integers(0, 2**32 - 1)), max_size=4),
       st.binary(max_size=40), st.booleans())
def test_idx_header(type_code, dims, payload, gz):
    import gzip

    data = bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload
    check_detect_and_read(gzip.compress(data, mtime=0) if gz else data)


@given(st.lists(st.one_of(st.integers(0, 2), st.floats(allow_nan=True, allow_infinity=True)), min_size=1,
                max_size=6))
def test_idx_float_labels(values):
    data = bytes([0, 0, 0x0E, 1]) + struct.pack(">I", len(values)) + struct.pack(f">{len(values)}d", *values)
    check_detect_and_read(data)


@given(st.dictionaries(st.sampled_from([b"label_names", b"fine_label_names", "label_names", b"num_vis"]),
                       st.one_of(st.lists(st.one_of(st.binary(max_size=6), st.text(max_size=6), st.integers()),
                                          max_size=4), st.integers(), st.none()), max_size=3),
       st.binary(max_size=3))
def test_cifar_meta(obj, tail):
    # The class names of a CIFAR source (batches.meta / meta): a list of names, or one line.
    from imgpipe.arrayfiles import load_cifar_meta

    with scratch() as tmp:
        path = tmp / "batches.meta"
        path.write_bytes(pickle.dumps(obj, protocol=2) + tail)
        names, _ = outcome(lambda: load_cifar_meta(path), str(path))
    if names is not None:
        assert all(isinstance(n, str) for n in names)
