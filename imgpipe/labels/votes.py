"""The normalised table every label reader returns: one row per vote a label file casts.

Columns:
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

from collections.abc import Iterable

import pandas as pd

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
