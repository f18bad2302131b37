"""The validate stage's orchestration: join manifest and labels, run the suite, quarantine, split.

The suite runner is :mod:`imgpipe.clean.suite`, the split assignment :mod:`imgpipe.split`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from imgpipe.clean.suite import ExpectationOutcome, run_suite
from imgpipe.contracts import SPLITS
from imgpipe.errors import ValidationFailed
from imgpipe.params.validate import ValidateParams
from imgpipe.split import assign_splits


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
    suite_path: str = "the suite",
) -> ValidationResult:
    df = join_tables(manifest, labels)
    # An image the labels stage dropped by policy (say, an unreviewed Label Studio task under
    # on_unreviewed: drop) leaves the dataset here; it is not a quarantine case.
    dropped = dropped_by_label_policy(df, label_issues)
    df = df[~df["item_id"].isin(dropped)].reset_index(drop=True)
    outcomes = run_suite(df, suite, {"classes": list(classes), "max_label_index": max(len(classes) - 1, 0)}, suite_path)
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
