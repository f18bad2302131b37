"""Validate and clean: a Great Expectations suite over manifest + labels, quarantine, splits.

The suite lives in the repository as a GX 1.x JSON file a person can read and edit. Each
expectation's ``meta.level`` says what a failure means: ``row`` quarantines the flagged rows
(with ``meta.reason`` as the reason), ``table`` fails the stage. GX's own result objects carry
run ids and timestamps, so the stage writes its own deterministic summary instead.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe.errors import PipelineError, ValidationFailed
from imgpipe.params import ValidateParams

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ExpectationOutcome:
    type: str
    column: str | None
    level: str
    reason: str
    success: bool
    failing_rows: list[int]  # DataFrame positions, for row-level expectations
    observed: object = None


def load_suite(path: Path) -> dict:
    try:
        suite = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: expectation suite not found") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise PipelineError(f"{path}: not a GX suite (needs an 'expectations' list)")
    for i, exp in enumerate(suite["expectations"]):
        level = (exp.get("meta") or {}).get("level", "row")
        if level not in ("row", "table"):
            raise PipelineError(f"{path}: expectation {i} ({exp.get('type')}): meta.level must be row or table")
    return suite


def run_suite(df: pd.DataFrame, suite: dict, parameters: dict) -> list[ExpectationOutcome]:
    """Run the suite with real Great Expectations on an in-memory DataFrame."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Some GX modules pin their own loggers to INFO on import; quiet them all afterwards.
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations")]:
        logging.getLogger(name).setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_or_update_pandas("imgpipe")
        .add_dataframe_asset("dataset")
        .add_batch_definition_whole_dataframe("whole")
    )
    try:
        gx_suite = context.suites.add(
            ExpectationSuite(name=suite.get("name", "suite"), expectations=suite["expectations"])
        )
    except Exception as exc:  # GX raises a zoo of types for a bad expectation config
        raise PipelineError(f"the expectation suite is invalid: {exc}") from None
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validate", data=batch, suite=gx_suite)
    )
    # GX reports failing rows by DataFrame index: make it positional.
    frame = df.reset_index(drop=True)
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "COMPLETE"},
    )
    outcomes = []
    for res in result.results:
        config = res.expectation_config
        meta = config.meta or {}
        exc_info = res.exception_info or {}
        if exc_info.get("raised_exception"):
            raise PipelineError(f"expectation {config.type} on {config.kwargs.get('column')} raised: "
                                f"{exc_info.get('exception_message')}")
        outcomes.append(
            ExpectationOutcome(
                type=config.type,
                column=config.kwargs.get("column"),
                level=meta.get("level", "row"),
                reason=meta.get("reason", config.type),
                success=bool(res.success),
                failing_rows=sorted(int(i) for i in (res.result.get("unexpected_index_list") or [])),
                observed=res.result.get("observed_value"),
            )
        )
    return outcomes


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
    """Row position -> every reason it is quarantined (expectations first, then label issues)."""
    reasons: dict[int, list[str]] = {}
    for outcome in outcomes:
        if outcome.level == "row":
            for pos in outcome.failing_rows:
                reasons.setdefault(pos, []).append(outcome.reason)
    if len(label_issues):
        flagged = label_issues[(label_issues["action"] == "quarantine") & (label_issues["item_id"] != "")]
        position = {item: pos for pos, item in enumerate(df["item_id"])}
        for item, problem, detail in flagged[["item_id", "problem", "detail"]].itertuples(index=False):
            if item in position:
                text = f"label {problem.replace('_', ' ')}" + (f": {detail}" if detail else "")
                reasons.setdefault(position[item], []).append(text)
    return {pos: list(dict.fromkeys(rs)) for pos, rs in sorted(reasons.items())}


def _take(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (held out, rest) with ``round(n * fraction)`` held out."""
    shuffled = rng.permutation(indices)
    k = int(round(len(indices) * fraction))
    return np.sort(shuffled[:k]), np.sort(shuffled[k:])


def stratified_holdout(labels: np.ndarray, pool: np.ndarray, fraction: float, seed: int, salt: str) -> np.ndarray:
    """Indices from ``pool`` held out per class, seeded per (seed, salt, class) so adding a class
    never reshuffles the others."""
    held = []
    for cls in sorted(set(labels[pool].tolist())):
        members = pool[labels[pool] == cls]
        rng = np.random.default_rng([seed, *salt.encode(), 0, *str(cls).encode()])
        out, _rest = _take(members, fraction, rng)
        held.append(out)
    return np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)


def assign_splits(df: pd.DataFrame, cfg: ValidateParams) -> pd.Series:
    """train/val/test per row. A split the source defines is kept; the rest is stratified."""
    source = df["source_split"].fillna("").to_numpy()
    labels = df["label"].astype(str).to_numpy()
    split = np.full(len(df), "train", dtype=object)
    split[source == "test"] = "test"
    split[source == "val"] = "val"
    pool = np.nonzero((source != "test") & (source != "val"))[0]
    if not (source == "test").any() and cfg.test_fraction > 0:
        test = stratified_holdout(labels, pool, cfg.test_fraction, cfg.seed, "test")
        split[test] = "test"
        pool = np.setdiff1d(pool, test)
    if not (source == "val").any() and cfg.val_fraction > 0:
        val = stratified_holdout(labels, pool, cfg.val_fraction, cfg.seed, "val")
        split[val] = "val"
    return pd.Series(split, index=df.index, name="split", dtype="string")


@dataclass
class ValidationResult:
    dataset: pd.DataFrame
    quarantine: pd.DataFrame
    quality: dict  # metrics/data_quality.json: counts only, so `dvc exp show` stays readable
    expectations: list[dict]  # per-expectation outcome, written next to the dataset


def validate(
    manifest: pd.DataFrame,
    labels: pd.DataFrame,
    label_issues: pd.DataFrame,
    classes: list[str],
    rejects: pd.DataFrame,
    suite: dict,
    cfg: ValidateParams,
) -> ValidationResult:
    df = join_tables(manifest, labels)
    # An image the labels stage dropped by policy (say, an unreviewed Label Studio task under
    # on_unreviewed: drop) leaves the dataset here; it is not a quarantine case.
    dropped = dropped_by_label_policy(df, label_issues)
    df = df[~df["item_id"].isin(dropped)].reset_index(drop=True)
    outcomes = run_suite(df, suite, {"classes": list(classes), "max_label_index": max(len(classes) - 1, 0)})
    table_failures = [o for o in outcomes if o.level == "table" and not o.success]
    if table_failures:
        raise ValidationFailed(
            "; ".join(f"{o.reason} ({o.type}, observed {o.observed})" for o in table_failures)
        )
    reasons = quarantine_reasons(df, outcomes, label_issues)
    bad = np.zeros(len(df), dtype=bool)
    bad[list(reasons)] = True
    quarantine = pd.DataFrame(
        {
            "item_id": df["item_id"].to_numpy()[bad],
            "source_path": df["source_path"].to_numpy()[bad],
            "reasons": ["; ".join(reasons[p]) for p in sorted(reasons)],
        }
    ).astype("string")
    clean = df[~bad].reset_index(drop=True)
    if clean.empty:
        raise ValidationFailed(f"every one of the {len(df)} images was quarantined")
    clean["label_index"] = clean["label_index"].astype("int64")
    clean["split"] = assign_splits(clean, cfg)

    total = len(df)
    fraction = float(bad.sum()) / total if total else 0.0
    by_reason: dict[str, int] = {}
    for rs in reasons.values():
        for r in rs:
            key = r.split(":")[0]
            by_reason[key] = by_reason.get(key, 0) + 1
    split_counts = clean["split"].value_counts()
    quality = {
        "images_decoded": total + len(dropped),
        "images_dropped_by_label_policy": len(dropped),
        "images_rejected_by_preprocess": int(len(rejects)),
        "images_valid": int(len(clean)),
        "images_quarantined": int(bad.sum()),
        "quarantine_fraction": round(fraction, 6),
        "quarantine_by_reason": dict(sorted(by_reason.items())),
        "expectations_failed": sum(not o.success for o in outcomes),
        "splits": {s: int(split_counts.get(s, 0)) for s in SPLITS},
        "classes": len(classes),
    }
    if fraction > cfg.max_quarantine_fraction:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1])[:5])
        raise ValidationFailed(
            f"{int(bad.sum())} of {total} images quarantined ({fraction:.1%}) exceeds "
            f"validate.max_quarantine_fraction={cfg.max_quarantine_fraction:.1%}; reasons: {top}"
        )
    report = [
        {"expectation": o.type, "column": o.column, "level": o.level, "reason": o.reason,
         "success": o.success, "unexpected": len(o.failing_rows)}
        for o in outcomes
    ]
    return ValidationResult(dataset=clean, quarantine=quarantine, quality=quality, expectations=report)
