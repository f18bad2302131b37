"""The interface every cleaning check implements, and the registry the validate loop reads.

A check is a class with a ``name`` (its key in the registry and in ``quality_detail.json``), the
``section`` of ``params.yaml`` it reads (``validate.<section>``), the review ``check`` values it
writes, and one method, :meth:`Check.run`, from the dataset to review rows and counters. The
validate stage (:mod:`imgpipe.validate.validation`) runs every registered check that is enabled,
in ``order``, under a fixed BLAS thread count, and combines their results
(:mod:`imgpipe.validate.checks.loop`): the strongest decision per image wins, counters go to
``metrics/data_quality.json``, and ``same_split`` pairs keep images together when the splits are
drawn.

Adding a check touches one new module (a subclass with ``@register``), one import line in
:mod:`imgpipe.validate.checks`, its params model in :mod:`imgpipe.params.validate`, and its
section in ``params.yaml`` -- the same shape as cleanlab's Datalab issue managers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID, REVIEW_COLUMNS, SOURCE_PATH

POLICY_DECISION = {"flag": "flagged", "drop": "dropped", "quarantine": "quarantined"}
DECISIONS = ("kept", "flagged", "dropped", "quarantined")  # weakest to strongest


@dataclass
class CheckContext:
    """What a check sees: the images that passed the Great Expectations gate.

    ``rows`` is the manifest joined with the labels (positional index 0..n-1; columns
    ``item_id``, ``source_path``, ``label``, ``label_index``, ``source_split``, ``pixel_sha256``,
    the perceptual hashes and statistics of ``docs/DATA_CONTRACTS.md``). Pixels are read on
    demand: :meth:`pixel_source` maps a top-level function over chunks of them (on the engine,
    when there is one) and :meth:`pixel_chunks` streams them, so memory stays bounded; the
    built-in checks use nothing else. :meth:`pixels` loads them all (a plug-in on small data).
    """

    rows: pd.DataFrame
    classes: list[str]
    cfg: Any  # imgpipe.params.validate.ValidateParams: the whole section; a check reads its own part
    pixel_loader: Callable[[np.ndarray], np.ndarray] | None = None  # row positions -> (k, H, W, C) uint8
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # other stage inputs by name ("boxes", ...)
    engine: Any = None  # runs per-chunk work elsewhere (imgpipe.validate.engine); None: in this process
    image_shape: tuple[int, int, int] | None = None  # (H, W, C) of the pixels; read from the first row if None
    _pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_pixels(self) -> bool:
        return self.pixel_loader is not None and len(self.rows) > 0

    def pixels(self) -> np.ndarray | None:
        """Every row's stored pixels, in row order (loaded once and shared by the checks)."""
        if self._pixels is None and self.has_pixels:
            self._pixels = self.pixel_loader(np.arange(len(self.rows)))
        return self._pixels

    def pixel_source(self, positions: np.ndarray | None = None):
        """The pixels of ``positions`` (default: every row) as a
        :class:`imgpipe.validate.chunked.PixelSource`: read a chunk at a time, never all at once."""
        from imgpipe.validate.chunked import PixelSource

        if self.image_shape is None:
            self.image_shape = tuple(int(s) for s in self.pixel_loader(np.arange(1)).shape[1:])
        pos = np.arange(len(self.rows)) if positions is None else np.asarray(positions, dtype=np.int64)
        return PixelSource(self.pixel_loader, pos, self.image_shape, self.engine)

    def pixel_chunks(self, chunk_rows: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """``(rows slice, pixels)`` in row order, ``chunk_rows`` at a time (default: about
        12 MiB of pixels per chunk)."""
        if not self.has_pixels:
            return
        if chunk_rows is None:
            from imgpipe.validate.chunked import rows_per_chunk

            chunk_rows = rows_per_chunk(self.pixel_source().shape)
        for start in range(0, len(self.rows), chunk_rows):
            sl = slice(start, min(start + chunk_rows, len(self.rows)))
            if self._pixels is not None:
                yield sl, self._pixels[sl]
            else:
                yield sl, self.pixel_loader(np.arange(sl.start, sl.stop))


@dataclass
class CheckResult:
    """What a check returns.

    ``findings``: :data:`imgpipe.contracts.REVIEW_COLUMNS` rows (use :func:`findings_frame`);
    ``decision`` is ``kept``/``flagged``/``dropped``/``quarantined``. ``counters``: the lean
    figures for ``metrics/data_quality.json`` (ints or floats, keys unique across checks).
    ``detail``: anything larger, written to ``quality_detail.json`` under the check's name (or
    merged at its top level when the check sets ``detail_key = ""``; the built-in checks do, to
    keep the file as it was).
    ``same_split``: two arrays of row positions, pairs that must land in the same split
    (duplicate groups); the loop joins them into connected components.
    """

    findings: pd.DataFrame
    counters: dict[str, int | float] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    same_split: tuple[np.ndarray, np.ndarray] | None = None


class Check:
    """Base class of a cleaning check. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]  # registry key, e.g. "near_duplicates"
    section: ClassVar[str]  # params: validate.<section>
    writes: ClassVar[tuple[str, ...]]  # review ``check`` values this check writes
    order: ClassVar[int] = 50  # position among the checks and in the review table
    needs_pixels: ClassVar[bool] = False  # True: skipped when no pixels can be read
    detail_key: ClassVar[str | None] = None  # quality_detail.json key of ``detail``: None = ``name``, "" = top level

    def params(self, cfg: Any) -> Any:
        return getattr(cfg, self.section)

    def enabled(self, cfg: Any) -> bool:
        """Off when its params say ``enabled: false`` (checks without that key always run)."""
        return bool(getattr(self.params(cfg), "enabled", True))

    def values_off(self, cfg: Any) -> tuple[str, ...]:
        """Review values of ``writes`` this check will not look for although it runs (a part of
        it switched off by its params); the per-class table shows them as "off", not 0."""
        return ()

    def applies(self, ctx: CheckContext) -> bool:
        """Whether this dataset has what the check looks at (box checks: boxes). A check that does
        not apply is skipped like one that is off: no findings, no counters."""
        return True

    def run(self, ctx: CheckContext) -> CheckResult:  # pragma: no cover - interface
        raise NotImplementedError


REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add a check to the registry under its ``name`` (names are unique)."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"two cleaning checks are named {cls.name!r}: {REGISTRY[cls.name]} and {cls}")
    REGISTRY[cls.name] = cls
    return cls


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("score", "suggested_score") else "string")
                         for c in REVIEW_COLUMNS})


def findings_frame(rows: pd.DataFrame, pos: np.ndarray, check, score, decision, group="", suggested="",
                   detail="", suggested_score=np.nan) -> pd.DataFrame:
    """Review rows for the images at positions ``pos`` of ``rows``; scalars are broadcast."""
    pos = np.asarray(pos, dtype=np.int64)
    n = len(pos)

    def col(v):
        return list(v) if isinstance(v, (list, tuple, np.ndarray, pd.Series)) else [v] * n

    return pd.DataFrame({
        ITEM_ID: rows[ITEM_ID].to_numpy()[pos], SOURCE_PATH: rows[SOURCE_PATH].to_numpy()[pos],
        "check": col(check), "score": np.asarray(col(score), dtype=np.float64), "decision": col(decision),
        "group_id": col(group), "suggested_label": col(suggested),
        "suggested_score": np.asarray(col(suggested_score), dtype=np.float64), "detail": col(detail),
    }, columns=list(REVIEW_COLUMNS))
