"""Readers for the plain label formats, and format detection from a file's content.

Every reader returns the normalised votes table of :mod:`imgpipe.labeltable`. A file that cannot
be read as the format it claims to be raises :class:`LabelError` naming the file and the problem.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from imgpipe import arrayfiles
from imgpipe.errors import LabelError, PipelineError
from imgpipe.labelstudio.read import LS_CSV_MARKERS, LS_TASK_MARKERS
from imgpipe.labeltable import load_json, read_table, read_text, shown_list, vote, votes_frame
from imgpipe.rawdata import SPLIT_DIRS, iter_array_files


def require_columns(header: Sequence[str], wanted: dict[str, str], name: str, sep: str) -> None:
    """Every ``{column: param}`` in ``wanted`` must be a header column."""
    for column, param in wanted.items():
        if column not in header:
            hint = ""
            other = "\t" if sep == "," else ","
            if len(header) == 1 and other in header[0]:
                hint = f"; the header looks {'tab' if other == chr(9) else 'comma'}-separated: set labels.format"
            raise LabelError(
                f"{name}: no column {column!r} (columns: {shown_list(header) or 'none'}); "
                f"set {param} to the column that holds it{hint}"
            )


def read_csv_labels(
    path: Path,
    *,
    sep: str = ",",
    file_column: str = "file",
    label_column: str = "label",
    name: str | None = None,
) -> pd.DataFrame:
    """Votes from a CSV/TSV file with one image reference column and one label column."""
    name = name or str(path)
    header, rows = read_table(path, sep, name)
    require_columns(header, {file_column: "labels.file_column", label_column: "labels.label_column"}, name, sep)
    return votes_frame(
        vote(row[file_column], row[label_column], "", "label", line, f"line {line}") for line, row in rows
    )


def imagefolder_class(item_id: str) -> str:
    """The class an ImageFolder layout gives an image: its parent folder, unless that is a split."""
    parts = PurePosixPath(item_id).parts
    if len(parts) < 2 or parts[-2].lower() in SPLIT_DIRS:
        return ""
    return parts[-2]


def read_imagefolder_labels(item_ids: Sequence[str]) -> pd.DataFrame:
    """Votes from folder names; an image with no class folder gets no vote (a missing label)."""
    rows = []
    for i, item_id in enumerate(item_ids, 1):
        label = imagefolder_class(item_id)
        if label:
            rows.append(vote(item_id, label, "", "label", i, "folder name"))
    return votes_frame(rows)


def class_name(index: int, classes: Sequence[str]) -> str:
    """The class at ``index``; an index outside the list stays a number (an unknown class)."""
    return classes[index] if 0 <= index < len(classes) else str(index)


def _array_votes(reference_prefix: str, labels: np.ndarray, classes: Sequence[str]) -> list[dict]:
    return [
        vote(f"{reference_prefix}#{i}", class_name(int(lab), classes), "", "label", i + 1, f"index {i}")
        for i, lab in enumerate(labels.tolist())
    ]


def read_array_labels(files_dir: Path, layout: str, classes: Sequence[str]) -> pd.DataFrame:
    """Votes from the label arrays of an official layout (CIFAR batches, MNIST IDX files)."""
    rows: list[dict] = []
    for rel, _split, _images, labels in iter_array_files(files_dir, layout):  # type: ignore[arg-type]
        rows += _array_votes(rel, labels, classes)
    return votes_frame(rows)


def read_cifar_labels(path: Path, classes: Sequence[str] = (), name: str | None = None) -> pd.DataFrame:
    """Votes from one CIFAR batch pickle; references are ``<file name>#<index>``."""
    name = name or str(path)
    try:
        _images, labels, _coarse, _files = arrayfiles.load_cifar_batch(path)
    except FileNotFoundError:
        raise LabelError(f"{name}: label file not found") from None
    except PipelineError as exc:
        raise LabelError(_renamed(exc, path, name)) from None
    return votes_frame(_array_votes(Path(path).name, labels, classes))


def read_idx_labels(path: Path, image_file: str, classes: Sequence[str] = (), name: str | None = None) -> pd.DataFrame:
    """Votes from an MNIST IDX label file for the images in ``image_file``."""
    name = name or str(path)
    try:
        labels = arrayfiles.load_idx(path)
    except FileNotFoundError:
        raise LabelError(f"{name}: label file not found") from None
    except PipelineError as exc:
        raise LabelError(_renamed(exc, path, name)) from None
    if labels.ndim != 1:
        raise LabelError(f"{name}: an IDX label file holds one number per image, this one has shape {labels.shape}")
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.round(labels)) & (np.abs(labels) < 2**31)
        if not whole.all():
            i = int(np.argmin(whole))
            raise LabelError(f"{name}: IDX label {i} is {labels[i]!r}, not a class number")
    return votes_frame(_array_votes(image_file, labels.astype(np.int64), classes))


def _renamed(exc: Exception, path: Path, name: str) -> str:
    """The raw readers name the file by its path; show the name the user gave (a URL, say)."""
    text = str(exc).replace(str(path), name)
    return text if text.startswith(name) else f"{name}: {text}"


def detect_format(path: Path, name: str | None = None) -> str:
    """Tell the label format from the file's content, not its name."""
    name = name or str(path)
    try:
        head = Path(path).read_bytes()[:65536]
    except FileNotFoundError:
        raise LabelError(f"{name}: label file not found") from None
    except IsADirectoryError:
        raise LabelError(f"{name}: is a folder, expected a label file") from None
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path) as fh:
                head = fh.read(4)
        except (OSError, EOFError) as exc:
            raise LabelError(f"{name}: corrupt gzip: {exc}") from None
    if len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] in (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E):
        return "idx"
    if head[:1] == b"\x80":  # pickle protocol 2+, as the CIFAR batches are written
        return "cifar"
    text = read_text(path, name).lstrip()
    if text[0] in "[{":
        return _detect_json(text, name)
    first = text.splitlines()[0]
    sep = "\t" if first.count("\t") > first.count(",") else ","
    header = {h.strip() for h in next(csv.reader([first], delimiter=sep))}
    if LS_CSV_MARKERS.issubset(header):
        return "label-studio-csv"
    return "tsv" if sep == "\t" else "csv"


def _detect_json(text: str, name: str) -> str:
    data = load_json(text, name)
    if not isinstance(data, list):
        raise LabelError(
            f"{name}: JSON but not a Label Studio export (a {type(data).__name__}; exports are a list of tasks)"
        )
    if not data:
        raise LabelError(f"{name}: empty Label Studio export (no tasks)")
    records = [r for r in data if isinstance(r, dict)]
    if records and all(isinstance(r.get("data"), dict) and LS_TASK_MARKERS & r.keys() for r in records):
        return "label-studio-json"
    if records and all(LS_CSV_MARKERS & r.keys() for r in records):
        return "label-studio-json-min"
    raise LabelError(
        f"{name}: JSON but not a Label Studio export: expected tasks with 'data' and 'annotations' (JSON) "
        "or records with 'annotator' and 'annotation_id' (JSON-MIN)"
    )
