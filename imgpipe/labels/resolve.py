"""From votes to one label per image: matching, class freezing, majority vote, problems, policies.

Rules, per image, on its non-cancelled votes:
- no vote at all: ``missing_label``; only ``unreviewed`` votes (model predictions): ``unreviewed``.
- the same (annotator, label) twice: the repeat is a ``duplicate_row``, dropped.
- only empty labels: ``empty_label`` (treated as a missing label); an empty label beside real
  ones is dropped and reported.
- one annotator giving different labels (two rows of an annotator-less CSV, or one annotation
  choosing several classes): ``conflict``. Votes without an annotator count as one annotator, so
  rows that disagree are never outvoted.
- otherwise a vote across annotators (``labels.vote``): ``majority``, or ``dawid-skene``, which
  weighs each annotator by the reliability estimated from all their labels (see
  :mod:`imgpipe.labels.agreement`) and picks the most probable of the labels the image was given;
  a tie for the top is a ``tie``, never guessed.
- a winning label outside the frozen class list: ``unknown_class``.
Votes whose reference names no single image are ``orphan_label`` (one issue per reference).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from imgpipe.errors import LabelError
from imgpipe.labels.agreement import annotator_report, clean_votes, reliability_posteriors
from imgpipe.labels.match import ItemMatcher, Match
from imgpipe.params.labels import LabelsParams

PROBLEMS = (
    "missing_label",
    "empty_label",
    "unknown_class",
    "conflict",
    "tie",
    "orphan_label",
    "duplicate_row",
    "unreviewed",
)
# The param that sets each problem's policy; duplicate rows are always collapsed (dropped).
POLICY_KEYS = {
    "missing_label": "on_missing_label",
    "empty_label": "on_missing_label",
    "unknown_class": "on_unknown_class",
    "conflict": "on_conflict",
    "tie": "on_conflict",
    "orphan_label": "on_orphan_label",
    "unreviewed": "on_unreviewed",
}
LABEL_COLUMNS = ("item_id", "label", "label_index", "annotators", "agreement", "label_source")
ISSUE_COLUMNS = ("item_id", "reference", "problem", "detail", "action")
MAX_EXAMPLES = 5


def policy(problem: str, cfg: LabelsParams) -> str:
    key = POLICY_KEYS.get(problem)
    return getattr(cfg, key) if key else "drop"


def match_votes(votes: pd.DataFrame, matcher: ItemMatcher) -> pd.DataFrame:
    """The votes plus ``item_id`` (``""`` when unmatched), ``match`` (how) and ``match_detail``."""
    cache: dict[str, Match] = {}
    found = []
    for ref in votes["reference"]:
        if ref not in cache:  # several annotators name the same image: match it once
            cache[ref] = matcher.match(ref)
        found.append(cache[ref])
    out = votes.copy()
    out["item_id"] = pd.Series([m.item_id for m in found], index=out.index, dtype="str")
    out["match"] = pd.Series([m.how for m in found], index=out.index, dtype="str")
    out["match_detail"] = pd.Series([m.detail for m in found], index=out.index, dtype="str")
    return out


_INT = re.compile(r"^-?\d+$")


def sort_classes(names: Sequence[str]) -> list[str]:
    """Sorted class names; all-integer names sort as numbers so "10" follows "9"."""
    unique = set(names)
    if unique and all(_INT.match(n) for n in unique):
        return sorted(unique, key=lambda n: (int(n), n))
    return sorted(unique)


def freeze_classes(
    matched: pd.DataFrame, given: Sequence[str] = (), source_classes: Sequence[str] | None = None
) -> tuple[list[str], str]:
    """The class list in index order and where it came from: ``params``, ``source`` or ``inferred``."""
    if given:
        names = [str(c).strip() for c in given]
        if any(not n for n in names):
            raise LabelError("labels.classes: a class name is empty")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise LabelError(f"labels.classes: {repeated[0]!r} is listed more than once")
        return names, "params"
    if source_classes:
        return [str(c) for c in source_classes], "source"
    used = matched[(matched["item_id"] != "") & (matched["kind"] == "label") & (matched["label"] != "")]
    return sort_classes(used["label"].tolist()), "inferred"


@dataclass
class Resolution:
    labels: pd.DataFrame
    issues: pd.DataFrame
    stats: dict = field(default_factory=dict)
    annotators: dict = field(default_factory=dict)  # agreement report, see agreement.annotator_report


@dataclass(frozen=True)
class _Vote:
    reference: str
    label: str
    annotator: str
    kind: str
    row: int
    where: str


def _listing(votes: Sequence[_Vote], limit: int = 4) -> str:
    # By label, so the text does not depend on the export's record order.
    votes = sorted(votes, key=lambda v: (v.label, v.row, v.where))
    shown = "; ".join(f"{v.label or '(empty)'} ({v.where})" for v in votes[:limit])
    return shown + (f"; and {len(votes) - limit} more" if len(votes) > limit else "")


class _Issues:
    def __init__(self, cfg: LabelsParams) -> None:
        self.cfg = cfg
        self.rows: list[dict] = []

    def add(self, item_id: str, reference: str, problem: str, detail: str, action: str | None = None) -> None:
        self.rows.append({
            "item_id": item_id, "reference": reference, "problem": problem, "detail": detail,
            "action": action or policy(problem, self.cfg),
        })


def _resolve_item(item_id: str, votes: list[_Vote], classes: dict[str, int], issues: _Issues,
                  label_file: str, posterior: dict[str, float] | None = None) -> tuple[str, int, float] | None:
    """(label, annotators, agreement) for one image, or None after recording why not.

    ``posterior`` (``labels.vote: dawid-skene``) ranks the image's labels instead of their counts.
    """
    human = [v for v in votes if v.kind == "label"]
    if not human:
        unreviewed = [v for v in votes if v.kind == "unreviewed"]
        if unreviewed:
            issues.add(item_id, unreviewed[0].reference, "unreviewed", unreviewed[0].where)
        else:
            issues.add(item_id, "", "missing_label", f"no label for this image in {label_file}")
        return None
    first: dict[tuple[str, str], _Vote] = {}
    unique = []
    for v in human:
        key = (v.annotator, v.label)
        if key in first:
            issues.add(item_id, v.reference, "duplicate_row", f"{v.where} repeats {first[key].where}", "drop")
            continue
        first[key] = v
        unique.append(v)
    filled = [v for v in unique if v.label]
    empty = [v for v in unique if not v.label]
    if not filled:
        issues.add(item_id, empty[0].reference, "empty_label", f"{empty[0].where}: the label is empty")
        return None
    for v in empty:
        issues.add(item_id, v.reference, "empty_label", f"{v.where}: empty label ignored, the image has others", "drop")
    by_annotator: dict[str, list[_Vote]] = {}
    for v in filled:
        by_annotator.setdefault(v.annotator, []).append(v)
    for annotator, own in by_annotator.items():
        if len(own) > 1:
            who = f"annotator {annotator}" if annotator else "the label file"
            issues.add(item_id, own[0].reference, "conflict", f"{who} gives different labels: {_listing(own)}")
            return None
    counts = Counter(v.label for v in filled)
    # Only labels someone gave this image can win; rounding keeps float noise from breaking ties.
    weight = {label: round(posterior.get(label, 0.0), 9) for label in counts} if posterior else counts
    top = max(weight.values())
    winners = sorted(label for label, w in weight.items() if w == top)
    total = len(filled)
    if len(winners) > 1:
        split = " vs ".join(f"{label} {counts[label]}" for label in sorted(counts))
        how = " (equally reliable)" if posterior else ""
        issues.add(item_id, filled[0].reference, "tie", f"{total} annotators tie{how}, {split}: {_listing(filled)}")
        return None
    label = winners[0]
    if label not in classes:
        issues.add(item_id, filled[0].reference, "unknown_class",
                   f"{label!r} is not one of the {len(classes)} classes ({filled[0].where})")
        return None
    return label, total, counts[label] / total


def resolve_votes(
    matched: pd.DataFrame,
    item_ids: Sequence[str],
    classes: Sequence[str],
    cfg: LabelsParams,
    *,
    label_source: str = "",
    label_file: str = "the label file",
) -> Resolution:
    """One label per image from matched votes (see :func:`match_votes`), with every problem.

    Rows follow ``item_ids`` order; orphan references follow, in file order. Issue actions are
    the policies in ``cfg`` (``fail`` included: :func:`enforce_policies` raises on those).
    """
    class_index = {c: i for i, c in enumerate(classes)}
    per_item: dict[str, list[_Vote]] = {}
    orphans: dict[str, list[tuple[_Vote, str]]] = {}
    cancelled = 0
    for rec in matched.itertuples(index=False):
        v = _Vote(rec.reference, rec.label, rec.annotator, rec.kind, int(rec.row), rec.where)
        if v.kind == "cancelled":
            cancelled += 1
        elif rec.item_id:
            per_item.setdefault(rec.item_id, []).append(v)
        else:
            orphans.setdefault(v.reference, []).append((v, rec.match_detail))
    issues = _Issues(cfg)
    rows = []
    split_votes = overruled = 0
    human = clean_votes({item: [(v.annotator, v.label) for v in vs if v.kind == "label"]
                         for item, vs in per_item.items()})
    posteriors, reliability = reliability_posteriors(human) if cfg.vote == "dawid-skene" else ({}, None)
    for item_id in item_ids:
        votes = per_item.get(item_id, [])
        result = _resolve_item(item_id, votes, class_index, issues, label_file, posteriors.get(item_id))
        if result:
            label, annotators, agreement = result
            split_votes += agreement < 1
            if posteriors and item_id in human:
                counts = Counter(human[item_id].values())
                overruled += counts[label] < max(counts.values()) or list(counts.values()).count(counts[label]) > 1
            rows.append((item_id, label, class_index[label], annotators, agreement, label_source))
    for reference, group in sorted(orphans.items(), key=lambda kv: min(v.row for v, _ in kv[1])):
        first, detail = group[0]
        count = f"{len(group)} votes, first at {first.where}" if len(group) > 1 else first.where
        issues.add("", reference, "orphan_label", f"{detail} ({count})")
    labels = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    labels = labels.astype({"item_id": "str", "label": "str", "label_index": "int64", "annotators": "int64",
                            "agreement": "float64", "label_source": "str"})
    issue_table = pd.DataFrame(issues.rows, columns=list(ISSUE_COLUMNS)).astype("str")
    stats = {
        "votes": int((matched["kind"] == "label").sum()),
        "cancelled_skipped": cancelled,
        "majority_resolved": int(split_votes),
        "matched_by": {k: int(n) for k, n in sorted(Counter(matched["match"]).items())},
    }
    if cfg.vote == "dawid-skene":
        # images whose reliability-weighted label is not the plain majority's (or breaks its tie)
        stats["vote_overruled_majority"] = int(overruled)
    report = annotator_report(human, dict(zip(labels["item_id"], labels["label"], strict=True)), reliability)
    return Resolution(labels, issue_table, stats, {"vote": cfg.vote, **report})


def _example(row: pd.Series) -> str:
    return f"{row['item_id'] or row['reference'] or '(no reference)'}: {row['detail']}"


def problem_report(issues: pd.DataFrame, cfg: LabelsParams) -> dict[str, dict]:
    """Per problem: count, action (or the policy that would apply) and up to five examples."""
    report = {}
    for problem in PROBLEMS:
        rows = issues[issues["problem"] == problem]
        actions = Counter(rows["action"])
        report[problem] = {
            "count": len(rows),
            "action": "/".join(sorted(actions)) if actions else policy(problem, cfg),
            "examples": [_example(r) for _, r in rows.head(MAX_EXAMPLES).iterrows()],
        }
    return report


def enforce_policies(issues: pd.DataFrame, cfg: LabelsParams, label_file: str) -> None:
    """Raise :class:`LabelError` for every problem whose policy is ``fail`` and that occurred."""
    failing = issues[issues["action"] == "fail"]
    if failing.empty:
        return
    parts = []
    for problem in PROBLEMS:
        rows = failing[failing["problem"] == problem]
        if len(rows):
            parts.append(
                f"{len(rows)} {problem.replace('_', ' ')} (labels.{POLICY_KEYS[problem]}: fail), "
                f"e.g. {_example(rows.iloc[0])}"
            )
    raise LabelError(f"{label_file}: " + "; ".join(parts))
