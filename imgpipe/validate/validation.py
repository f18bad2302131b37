"""The validate stage's orchestration: the GX gate, then the cleaning checks, then the splits.

1. Manifest joined with labels; images the labels stage dropped by policy leave here.
2. The Great Expectations suite (:mod:`imgpipe.validate.suite`) on two batches: ``images`` (one row
   per image) and ``classes`` (one row per frozen class: ``class``, ``count``, ``share``).
   ``table`` failures stop the stage; ``row`` failures quarantine with ``meta.reason``. A row the
   labels stage already quarantined keeps that one reason: the suite's label-column checks do not
   count it again.
3. Cleaning checks on what passed: every enabled check plug-in (:mod:`imgpipe.validate.checks`;
   duplicates and leakage, outliers, label issues, and whatever else is registered), run by
   :func:`imgpipe.validate.checks.loop.run_checks`. Each finding's decision follows its policy
   param: ``flagged`` (kept, listed), ``dropped``, ``quarantined``; the strongest wins per image.
4. Splits (:mod:`imgpipe.split`), with every duplicate group inside one split.

Everything a person needs to review lands in one table (``review.parquet``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID, LABEL, REVIEW_COLUMNS, SOURCE_PATH, SPLITS
from imgpipe.errors import ValidationFailed
from imgpipe.params.validate import ValidateParams
from imgpipe.split import assign_splits, leaking_groups
from imgpipe.validate.checks.base import CheckContext, findings_frame
from imgpipe.validate.checks.loop import CHECK_THREADS, run_checks
from imgpipe.validate.chunked import ItemPositions, LazyPixels
from imgpipe.validate.suite import ExpectationOutcome, run_suite

__all__ = ["CHECK_THREADS", "GateReport", "ValidationResult", "validate_dataset"]

LABEL_COLUMNS = frozenset({"label", "label_index"})
GATE_CHECKS = ("expectation", "label_import")  # review rows of the gate: before every check's
STAGE_COUNTERS = ("images_decoded", "images_rejected_by_preprocess", "reject_fraction", "images_dropped_by_label_policy",
                  "images_valid", "images_quarantined", "quarantine_fraction", "images_dropped_by_cleaning",
                  "images_flagged", "expectations_failed")  # data_quality.json keys of the stage, not of a check


def join_tables(manifest: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows (every decoded image) with their label, if any."""
    cols = ["item_id", "label", "label_index", "annotators", "agreement", "label_source"]
    joined = manifest.merge(labels[[c for c in cols if c in labels.columns]], on="item_id", how="left")
    std_cols = [c for c in joined.columns if c.startswith("std_c")]
    joined["std_max"] = joined[std_cols].max(axis=1) if std_cols else np.nan
    return joined


def dropped_by_label_policy(df: pd.DataFrame, label_issues: pd.DataFrame) -> set[str]:
    """Unlabelled images whose label issue's policy is ``drop``."""
    if not len(label_issues):
        return set()
    drops = set(label_issues.loc[label_issues["action"] == "drop", "item_id"]) - {""}
    unlabelled = set(df.loc[df["label"].isna(), "item_id"])
    return drops & unlabelled


def quarantine_reasons(
    df: pd.DataFrame, outcomes: list[ExpectationOutcome], label_issues: pd.DataFrame
) -> dict[int, list[str]]:
    """Row position -> its quarantine reasons, one per finding.

    The labels stage's own finding (a missing label, an unknown class, a conflict) comes first;
    an expectation on the label columns that fails on the same row is the same finding seen
    again and is not added (it used to count every such row twice).
    """
    reasons: dict[int, list[str]] = {}
    label_found: set[int] = set()
    if len(label_issues):
        flagged = label_issues[(label_issues["action"] == "quarantine") & (label_issues["item_id"] != "")]
        position = {item: pos for pos, item in enumerate(df["item_id"])}
        for item, problem, detail in flagged[["item_id", "problem", "detail"]].itertuples(index=False):
            if item in position:
                text = f"label {problem.replace('_', ' ')}" + (f": {detail}" if detail else "")
                reasons.setdefault(position[item], []).append(text)
                label_found.add(position[item])
    for outcome in outcomes:
        if outcome.level == "row":
            for pos in outcome.failing_rows:
                if pos in label_found and outcome.column in LABEL_COLUMNS:
                    continue
                reasons.setdefault(pos, []).append(outcome.reason)
    return {pos: list(dict.fromkeys(rs)) for pos, rs in sorted(reasons.items())}


def class_table(df: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The ``classes`` batch: one row per frozen class with its labelled image count and share."""
    counts = df[LABEL].value_counts()
    total = int(counts.sum())
    count = [int(counts.get(c, 0)) for c in classes]
    return pd.DataFrame({"class": classes, "count": count,
                         "share": [c / total if total else 0.0 for c in count]})


def split_suite(suite: dict) -> dict[str, dict]:
    """The suite's expectations per batch (``meta.batch``: ``images``, the default, or ``classes``)."""
    batches: dict[str, dict] = {"images": {**suite, "expectations": []}, "classes": {**suite, "expectations": []}}
    for exp in suite["expectations"]:
        batch = (exp.get("meta") or {}).get("batch", "images")
        if batch not in batches:
            raise ValidationFailed(f"expectation {exp.get('type')}: meta.batch must be images or classes, not {batch!r}")
        batches[batch]["expectations"].append(exp)
    return batches


@dataclass
class GateReport:
    """What the gate found, kept readable even when the stage fails."""

    expectations: list[dict] = field(default_factory=list)
    offending: pd.DataFrame | None = None  # the rows that made it fail (item_id, source_path, reason)
    quality: dict = field(default_factory=dict)


@dataclass
class ValidationResult:
    dataset: pd.DataFrame
    quarantine: pd.DataFrame
    review: pd.DataFrame  # contracts.REVIEW_COLUMNS, every finding of every check
    quality: dict  # metrics/data_quality.json: lean counts, so `dvc exp show` stays readable
    detail: dict  # per-class and per-reason counts, written next to the dataset
    expectations: list[dict]  # per-expectation outcome (the deterministic validation result)
    pixels: Any = None  # ``pixels[row]`` -> one image (read on demand), for the sheets
    pixel_index: Any = field(default_factory=dict)  # item_id -> row of ``pixels`` (``in``, ``[]``)


def _expectation_report(outcomes: list[ExpectationOutcome], batch: str, frame: pd.DataFrame) -> list[dict]:
    key = ITEM_ID if batch == "images" else "class"
    rows = []
    for o in outcomes:
        ids = frame[key].to_numpy()[o.failing_rows[:20]].tolist() if o.failing_rows else []
        observed = o.observed if isinstance(o.observed, (int, float, str, bool, type(None))) else str(o.observed)
        rows.append({"batch": batch, "expectation": o.type, "column": o.column, "level": o.level,
                     "reason": o.reason, "success": o.success, "unexpected": len(o.failing_rows),
                     "unexpected_examples": ids, "observed": observed})
    return rows


def _combine(review: pd.DataFrame, order: dict[str, int]) -> pd.DataFrame:
    """The review table: the gate's rows, then each check's in its ``order``."""
    review = review.astype({"score": "float64", "suggested_score": "float64"})
    for c in REVIEW_COLUMNS:
        if c not in ("score", "suggested_score"):
            review[c] = review[c].fillna("").astype("string")
    rank = {**order, **dict.fromkeys(GATE_CHECKS, -1)}
    review["_o"] = review["check"].map(lambda c: rank.get(c, 1 << 30))
    review = review.sort_values(["_o", "check", "group_id", "score", ITEM_ID], kind="stable")
    return review.drop(columns="_o").reset_index(drop=True)[list(REVIEW_COLUMNS)]


@contextmanager
def check_engine(cfg: ValidateParams, ctx: CheckContext):
    """The engine the checks' per-chunk pixel work runs on: None (this process) unless
    ``validate.engine`` is dask and there are pixels to read."""
    if getattr(cfg, "engine", "local") != "dask" or not ctx.has_pixels:
        yield None
        return
    from imgpipe.engine import EngineSpec, start
    from imgpipe.validate.chunked import ChunkEngine

    with start(EngineSpec.of(cfg, "validate")) as runner:
        root = getattr(ctx.pixel_loader, "root", None)
        if root:
            runner.require_paths([root], "the preprocessed shards")
        yield ChunkEngine(runner, CHECK_THREADS)


def validate_dataset(
    manifest: pd.DataFrame,
    labels: pd.DataFrame,
    label_issues: pd.DataFrame,
    classes: list[str],
    rejects: pd.DataFrame,
    suite: dict,
    cfg: ValidateParams,
    suite_path: str = "the suite",
    load_pixels: Callable[[pd.DataFrame], np.ndarray] | None = None,
    image_spec: dict | None = None,
    report: GateReport | None = None,
    configured: dict | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
) -> ValidationResult:
    """Run the gate and the cleaning checks. ``load_pixels(rows)`` returns the model pixels of
    those manifest rows (near duplicates and label issues need them; None skips both).
    ``image_spec``: ``{"height", "width", "channels"}`` of the pixels as stored (derived columns
    ``image_*``); ``configured``: the same keys as the params ask (the suite's ``$PARAMETER``s).
    ``report`` is filled as the gate goes, so a caller can write it out when this raises.
    ``tables``: other inputs the checks may read (``boxes``: ``data/labels/boxes.parquet``)."""
    report = report if report is not None else GateReport()
    df = join_tables(manifest, labels)
    # The join copies both tables; a caller that handed them over (no reference of its own, as the
    # stage does) gets their memory back here: ~0.4 KB per image, 0.4 GB at a million images.
    del manifest, labels
    dropped = dropped_by_label_policy(df, label_issues)
    if dropped:  # (no copy of a million-row table when nothing leaves)
        df = df[~df["item_id"].isin(dropped)].reset_index(drop=True)
    decoded = len(df) + len(dropped)
    spec = image_spec or {}
    df["image_height"] = int(spec.get("height", 0))
    df["image_width"] = int(spec.get("width", 0))
    df["image_channels"] = int(spec.get("channels", 0))
    want = configured or spec
    parameters = {
        "classes": list(classes), "max_label_index": max(len(classes) - 1, 0),
        "height": int(want.get("height", 0)), "width": int(want.get("width", 0)),
        "channels": int(want.get("channels", 0)),
        "min_class_count": cfg.min_class_count, "max_class_share": cfg.max_class_share,
    }
    batches = split_suite(suite)
    classes_df = class_table(df, classes)
    outcomes = run_suite(df, batches["images"], parameters, suite_path)
    class_outcomes = run_suite(classes_df, batches["classes"], parameters, suite_path) if batches["classes"]["expectations"] else []
    report.expectations = _expectation_report(outcomes, "images", df) + _expectation_report(class_outcomes, "classes", classes_df)

    rejected = len(rejects)
    reject_fraction = rejected / (decoded + rejected) if decoded + rejected else 0.0
    # A row-level expectation that fails without naming rows (an aggregate GX cannot point at
    # rows for) has nothing to quarantine: it fails the stage instead of passing unnoticed.
    table_failures = [o for o in outcomes if not o.success and (o.level == "table" or not o.failing_rows)]
    table_failures += [o for o in class_outcomes if not o.success]
    if table_failures:
        parts, offending = [], []
        for o in table_failures:
            frame = classes_df if o in class_outcomes else df
            key = "class" if o in class_outcomes else ITEM_ID
            names = frame[key].to_numpy()[o.failing_rows].tolist()
            parts.append(f"{o.reason} ({o.type}" + (f" on {o.column}" if o.column else "")
                         + (f": {', '.join(map(str, names[:5]))}" if names else f", observed {o.observed}") + ")")
            offending += [{ITEM_ID: str(x), SOURCE_PATH: str(x), "reason": o.reason} for x in names]
        report.offending = pd.DataFrame(offending, columns=[ITEM_ID, SOURCE_PATH, "reason"])
        raise ValidationFailed("; ".join(parts))

    reasons = quarantine_reasons(df, outcomes, label_issues)
    label_quarantined = set()
    if len(label_issues):
        label_quarantined = set(label_issues.loc[label_issues["action"] == "quarantine", "item_id"])
    gate_bad = np.zeros(len(df), dtype=bool)
    gate_bad[list(reasons)] = True
    review_parts = []
    if reasons:
        pos = np.array(sorted(reasons))
        review_parts.append(findings_frame(
            df, pos, ["label_import" if df[ITEM_ID].iloc[p] in label_quarantined else "expectation" for p in pos],
            np.nan, "quarantined", "", "", ["; ".join(reasons[p]) for p in pos]))

    # -- cleaning checks on what passed the gate -----------------------------------------------
    rest = df[~gate_bad].reset_index(drop=True) if gate_bad.any() else df.copy(deep=False)
    rest["label_index"] = rest["label_index"].astype("int64")
    loader = None
    if load_pixels is not None and hasattr(load_pixels, "for_rows"):  # shard reads an engine can send
        loader = load_pixels.for_rows(rest)
    elif load_pixels is not None:
        def loader(pos: np.ndarray) -> np.ndarray:
            return load_pixels(rest.iloc[pos])
    ctx = CheckContext(rows=rest, classes=list(classes), cfg=cfg, pixel_loader=loader, tables=dict(tables or {}))
    with check_engine(cfg, ctx) as ctx.engine:
        found = run_checks(ctx)
    checks, final, why, groups = found.findings, found.final, found.why, found.groups
    item_ids = rest[ITEM_ID].to_numpy()
    check_quarantined = final == "quarantined"
    removed = (final == "dropped") | check_quarantined

    quarantine_rows = [(df[ITEM_ID].iloc[p], df[SOURCE_PATH].iloc[p], "; ".join(reasons[p])) for p in sorted(reasons)]
    quarantine_rows += [(i, s, "; ".join(why[i])) for i, s in zip(item_ids[check_quarantined],
                        rest[SOURCE_PATH].to_numpy()[check_quarantined], strict=True)]
    quarantine = pd.DataFrame(quarantine_rows, columns=[ITEM_ID, SOURCE_PATH, "reasons"]).astype("string")

    clean = rest[~removed].reset_index(drop=True)
    clean_groups = groups[~removed]
    # Re-index groups to positions in ``clean`` (first surviving member leads).
    remap: dict[int, int] = {}
    new_groups = np.full(len(clean), -1, dtype=np.int64)
    for i, g in enumerate(clean_groups.tolist()):
        if g >= 0:
            new_groups[i] = remap.setdefault(g, i)
    if clean.empty:
        raise ValidationFailed(f"every one of the {len(df)} images was quarantined or dropped")
    clean["split"] = assign_splits(clean, cfg, new_groups)
    leaks = leaking_groups(clean["split"].to_numpy(), new_groups)
    if leaks:  # a source-fixed split the groups could not reconcile; never expected
        raise ValidationFailed(f"{len(leaks)} duplicate groups straddle splits, e.g. {clean[ITEM_ID].iloc[leaks[0]]}")

    review = _combine(pd.concat([*review_parts, checks], ignore_index=True) if review_parts else checks,
                      found.review_order)
    total = len(df)
    n_quarantined = int(gate_bad.sum() + check_quarantined.sum())
    fraction = n_quarantined / total if total else 0.0
    by_reason: dict[str, int] = {}
    for rs in reasons.values():
        for r in rs:
            key = r.split(":")[0]
            by_reason[key] = by_reason.get(key, 0) + 1
    for i in item_ids[check_quarantined]:
        for r in why[i]:
            key = r.split(":")[0]
            by_reason[key] = by_reason.get(key, 0) + 1
    split_counts = clean["split"].value_counts()
    per_check = checks.groupby(["check", "decision"]).size() if len(checks) else pd.Series(dtype=int)

    clash = sorted(set(found.counters) & {*STAGE_COUNTERS, *SPLITS})
    if clash:
        raise ValueError(f"a cleaning check's counter {clash} would overwrite the stage's own")
    quality = {
        "images_decoded": decoded,
        "images_rejected_by_preprocess": rejected,
        "reject_fraction": round(reject_fraction, 6),
        "images_dropped_by_label_policy": len(dropped),
        "images_valid": int(len(clean)),
        "images_quarantined": n_quarantined,
        "quarantine_fraction": round(fraction, 6),
        "images_dropped_by_cleaning": int((final == "dropped").sum()),
        "images_flagged": int((final == "flagged").sum()),
        "expectations_failed": sum(not o.success for o in outcomes + class_outcomes),
        **found.counters,
        "train": int(split_counts.get("train", 0)),
        "val": int(split_counts.get("val", 0)),
        "test": int(split_counts.get("test", 0)),
    }
    per_class: dict[str, dict] = {}
    for c in classes:
        per_class[c] = {"images": int(classes_df.loc[classes_df["class"] == c, "count"].iloc[0]),
                        "valid": int((clean[LABEL] == c).sum())}
    if len(checks):  # findings per (class, check), in order of first appearance (no per-image dict)
        label_of = pd.Series(df[LABEL].fillna("").astype(str).to_numpy(), index=df[ITEM_ID].to_numpy())
        pairs = pd.DataFrame({"c": checks[ITEM_ID].map(label_of).fillna("").to_numpy(),
                              "chk": checks["check"].to_numpy()})
        for (c, chk), count in pairs.groupby(["c", "chk"], sort=False).size().items():
            if c in per_class:
                per_class[c][chk] = per_class[c].get(chk, 0) + int(count)
    detail = {
        "quarantine_by_reason": dict(sorted(by_reason.items())),
        "findings_by_check": {f"{k[0]}/{k[1]}": int(v) for k, v in sorted(per_check.items())},
        **found.detail,
        "per_class": per_class,
        # [{check: review value, status: on | off | n/a}] in check order (a list: JSON keys get sorted)
        "check_status": [{"check": k, "status": v} for k, v in found.status.items()],
        "max_class_share": cfg.max_class_share,  # the limit the class shares were held to
        "splits": {s: int(split_counts.get(s, 0)) for s in SPLITS},
    }
    report.quality = quality
    if fraction > cfg.max_quarantine_fraction or reject_fraction > cfg.max_reject_fraction:
        offending = quarantine.rename(columns={"reasons": "reason"})
        if rejected:
            offending = pd.concat([offending, rejects[[ITEM_ID, SOURCE_PATH, "reason"]].astype("string")],
                                  ignore_index=True)
        report.offending = offending
        if reject_fraction > cfg.max_reject_fraction:
            raise ValidationFailed(
                f"{rejected} of {decoded + rejected} files could not be decoded by preprocess "
                f"({reject_fraction:.1%}) exceeds validate.max_reject_fraction={cfg.max_reject_fraction:.1%}")
        top = ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1])[:5])
        raise ValidationFailed(
            f"{n_quarantined} of {total} images quarantined ({fraction:.1%}) exceeds "
            f"validate.max_quarantine_fraction={cfg.max_quarantine_fraction:.1%}; reasons: {top}"
        )
    # The sheets show a few hundred images: read each when drawn, not every image up front.
    pixels = ctx._pixels if ctx._pixels is not None else (LazyPixels(loader) if loader is not None else None)
    index = ItemPositions(item_ids) if pixels is not None else {}
    return ValidationResult(dataset=clean, quarantine=quarantine, review=review, quality=quality, detail=detail,
                            expectations=report.expectations, pixels=pixels, pixel_index=index)
