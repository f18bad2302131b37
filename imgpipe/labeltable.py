"""What every label reader shares, below both :mod:`imgpipe.labels` and :mod:`imgpipe.labelstudio`:
reading a label file as text, CSV/TSV or JSON (a missing, binary, empty or malformed file is one
:class:`LabelError` line naming it), and the votes table every reader returns.

The votes table: one row per vote a label file casts. Columns:
- ``reference``: what the file says about the image (path, URL, file name or id), as written.
- ``label``: the class as written, whitespace stripped; ``""`` for an empty label.
- ``annotator``: who cast the vote; ``""`` when the format has no annotators (all such rows
  count as one anonymous annotator, so two rows that disagree are a conflict, not a vote).
- ``kind``: ``label`` (a human label, possibly empty), ``unreviewed`` (a Label Studio task with
  no human annotation, only model predictions or nothing) or ``cancelled`` (a skipped
  annotation: kept for the counts, never used).
- ``row``: 1-based position in the file (line, task or record), for ordering and messages.
- ``where``: that position in words (``line 7``, ``task 12, annotation 31``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from imgpipe.errors import LabelError

VOTE_COLUMNS = ("reference", "label", "annotator", "kind", "row", "where")
KINDS = ("label", "unreviewed", "cancelled")


def vote(reference: object, label: object, annotator: object, kind: str, row: int, where: str) -> dict:
    return {
        "reference": "" if reference is None else str(reference).strip(),
        "label": "" if label is None else str(label).strip(),
        "annotator": "" if annotator is None else str(annotator).strip(),
        "kind": kind,
        "row": int(row),
        "where": where,
    }


def votes_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """A votes table with fixed columns and dtypes, also when empty."""
    frame = pd.DataFrame(list(rows), columns=list(VOTE_COLUMNS))
    text = [c for c in VOTE_COLUMNS if c != "row"]
    frame[text] = frame[text].astype("str")
    frame["row"] = frame["row"].astype("int64")
    return frame


def shown(text: object) -> str:
    """User text inside a one-line message: as written when printable, else quoted and escaped
    (a column named with a line break must not break the line)."""
    text = str(text)
    return text if text and text.isprintable() else repr(text)


def shown_list(values, limit: int = 12) -> str:
    values = list(values)
    out = ", ".join(shown(v) for v in values[:limit])
    return out + (f" and {len(values) - limit} more" if len(values) > limit else "")


def read_text(path: Path, name: str) -> str:
    """The file as text; a missing, binary or empty file is a :class:`LabelError`."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise LabelError(f"{name}: label file not found") from None
    except IsADirectoryError:
        raise LabelError(f"{name}: is a folder, expected a label file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{name}: not UTF-8 text (byte {exc.start}); is it the right file?") from None
    if not text.strip():
        raise LabelError(f"{name}: empty label file")
    return text


def read_table(path: Path, sep: str, name: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line, row)`` pairs of a CSV/TSV file, every row checked against the header."""
    text = read_text(path, name)
    kind = "TSV" if sep == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = next((fields for fields in reader if fields), [])
        header = [h.strip() for h in header]
        duplicated = sorted({h for h in header if header.count(h) > 1})
        if duplicated:
            raise LabelError(f"{name}: column {duplicated[0]!r} appears more than once in the header")
        for fields in reader:
            if not any(f.strip() for f in fields):  # a blank line, or a spreadsheet's ",,"
                continue
            if len(fields) != len(header):
                raise LabelError(
                    f"{name}: malformed {kind}: line {reader.line_num} has {len(fields)} fields, "
                    f"the header has {len(header)}"
                )
            rows.append((reader.line_num, dict(zip(header, fields, strict=True))))
    except csv.Error as exc:
        hint = " (a quote that is never closed?)" if "end of data" in str(exc) else ""
        raise LabelError(f"{name}: malformed {kind}: line {reader.line_num}: {exc}{hint}") from None
    if not rows:
        raise LabelError(f"{name}: no label rows (only a header: {sep.join(map(shown, header))})")
    return header, rows


def load_json(text: str, name: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(f"{name}: not valid JSON: {exc}") from None
