"""Suspected test-label errors seen through the trained network (confident learning).

The test split's probabilities are out of sample: the model never trained on those images. So,
as in Northcutt et al. ("Pervasive label errors in test sets"), cleanlab's ``find_label_issues``
on them lists the images whose given label the network most confidently disagrees with, ranked
by self-confidence (the probability of the given label, lowest first), each with the network's
suggested label. The list goes to ``metrics/eval/label_errors.csv``, its length to
``metrics/eval.json`` (``suspected_label_errors``), the top of it to a contact sheet, and
``imgpipe review`` merges it with the validate stage's findings (``source`` = ``evaluate``).

It is a review queue, not a verdict: a suspect is a hard image as often as a wrong label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ("rank", "item_id", "source_path", "label", "suggested_label", "label_score", "suggested_score")
DIGITS = 6


def rank_label_errors(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Row positions of suspected label errors, least self-confident first (ties: lower row)."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    if len(labels) < 2 or len(present) < 2:
        return np.zeros(0, dtype=np.int64)
    # cleanlab wants every class index present: compact to the classes that occur.
    remap = np.full(probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = np.asarray(probs, dtype=np.float64)[:, present]
    sub = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1e-12)
    found = np.asarray(find_label_issues(remap[labels], sub, n_jobs=1), dtype=bool)
    rows = np.flatnonzero(found)
    self_confidence = probs[rows, labels[rows]]
    return rows[np.lexsort((rows, self_confidence))]


def label_error_table(items: pd.DataFrame, labels: np.ndarray, probs: np.ndarray,
                      classes: Sequence[str], rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row per suspect, most suspicious first: item id, source path, given and suggested
    label with the network's probability of each. ``rows``: the suspects' row positions, ranked
    (default: :func:`rank_label_errors`)."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = rank_label_errors(labels, probs) if rows is None else np.asarray(rows, dtype=np.int64)
    names = np.asarray(list(classes), dtype=object)
    suggested = probs[rows].argmax(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({
        "rank": np.arange(1, len(rows) + 1, dtype=np.int64),
        "item_id": items["item_id"].to_numpy()[rows].astype(str),
        "source_path": items["source_path"].to_numpy()[rows].astype(str),
        "label": names[labels[rows]].astype(str),
        "suggested_label": names[suggested].astype(str),
        "label_score": np.round(probs[rows, labels[rows]], DIGITS),
        "suggested_score": np.round(probs[rows, suggested], DIGITS),
    }, columns=list(COLUMNS)).astype({"item_id": str, "source_path": str, "label": str, "suggested_label": str})


TITLE = "Suspected test-label errors ({shown} of {total} shown; confident learning)"
EMPTY = "no suspected label errors on the test split"


def label_errors_png(table: pd.DataFrame, images: np.ndarray, items: pd.DataFrame, path: Path,
                     title: str = TITLE, empty: str = EMPTY) -> None:
    """The contact sheet: the top suspects, captioned with the given and the suggested label.
    ``title`` may use ``{shown}`` and ``{total}``; ``empty`` is drawn when there is no suspect
    (the crossval stage draws its own list with its own words)."""
    from imgpipe.evaluate import plots
    from imgpipe.evaluate.gallery import _short

    row_of = {item: row for row, item in enumerate(items["item_id"].astype(str))}
    top = table.head(plots.GALLERY_MAX)
    shown = [np.asarray(images[row_of[i]]) for i in top["item_id"]]
    caps = [f"{_short(r.item_id)}\ngiven: {r.label} ({r.label_score:.2f})\nnet: {r.suggested_label} "
            f"({r.suggested_score:.2f})" for r in top.itertuples(index=False)]
    plots.gallery_png(shown, caps, path, title.format(shown=len(top), total=len(table)),
                      figure="label_errors", empty=empty)


def review_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``label_errors.csv`` as review findings (``REVIEW_COLUMNS``, check ``test_label_error``,
    decision ``flagged``), for ``imgpipe review`` to merge with the validate stage's."""
    from imgpipe.contracts import REVIEW_COLUMNS

    if table.empty:
        return pd.DataFrame(columns=list(REVIEW_COLUMNS))
    return pd.DataFrame({
        "item_id": table["item_id"].astype(str),
        "source_path": table["source_path"].astype(str),
        "check": "test_label_error",
        "score": table["label_score"].astype(float),
        "decision": "flagged",
        "group_id": "",
        "suggested_label": table["suggested_label"].astype(str),
        "suggested_score": table["suggested_score"].astype(float),
        "detail": [f"trained network: given {g} (p={p:.3f}), says {s} (p={q:.3f})" for g, p, s, q in zip(
            table["label"], table["label_score"], table["suggested_label"], table["suggested_score"], strict=True)],
    }, columns=list(REVIEW_COLUMNS))
