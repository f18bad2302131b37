"""The one loop over the cleaning checks: run every enabled registered check, merge what they say.

* Checks run in ``order`` under a fixed BLAS/OpenMP thread count (:data:`CHECK_THREADS`): the
  k-means features, the ridge fit and the LSH projections sum in an order that depends on the
  thread count and then differ in their last bits (on digits, 7 label suspects at 2 threads, 8 at
  1). A fixed count makes the findings the same bytes whatever the core count and
  ``OMP_NUM_THREADS`` (Dask, for one, sets it to 1 in the process that starts a cluster).
* A check that ``needs_pixels`` is skipped when no pixels can be read; pixels are read once, by
  the first check that asks (:meth:`CheckContext.pixels`).
* The strongest decision per image wins (kept < flagged < dropped < quarantined); a quarantined
  image keeps every check's reason.
* Counters merge into one dict (a key claimed by two checks is a programming error); ``detail``
  goes under the check's name (or at the top level, ``detail_key = ""``).
* ``same_split`` pairs of every check become connected components: the groups the splits keep
  together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from imgpipe.contracts import ITEM_ID, REVIEW_COLUMNS
from imgpipe.validate.checks import registered_checks
from imgpipe.validate.checks.base import DECISIONS, Check, CheckContext, empty_findings
from imgpipe.validate.duplicates import component_groups

CHECK_THREADS = 2
DECISION_RANK = {d: i for i, d in enumerate(DECISIONS)}


@dataclass
class ChecksOutcome:
    findings: pd.DataFrame  # every check's review rows, in check order (not yet sorted for review)
    final: np.ndarray  # per row of ctx.rows: the strongest decision of any check ("kept" if none)
    why: dict[str, list[str]]  # item_id -> the reasons of the checks that quarantined it
    groups: np.ndarray  # per row: smallest position of its same-split group; -1 in none
    counters: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    review_order: dict[str, int] = field(default_factory=dict)  # review ``check`` value -> its check's order
    ran: list[str] = field(default_factory=list)  # names of the checks that ran, in order
    # review ``check`` value -> "on" | "off" | "n/a" (the dataset has nothing it looks at), for every
    # registered check: what the card's per-class table shows instead of a 0 (imgpipe.perclass)
    status: dict[str, str] = field(default_factory=dict)


def _check_result(check: Check, result) -> None:
    """A plug-in's mistake named at its source, not as a KeyError three functions later."""
    missing = [c for c in REVIEW_COLUMNS if c not in result.findings.columns]
    if missing:
        raise ValueError(f"cleaning check {check.name}: findings lack {', '.join(missing)} (use findings_frame)")
    odd = set(result.findings["decision"].dropna().unique().tolist()) - set(DECISIONS)
    if odd:
        raise ValueError(f"cleaning check {check.name}: decision {sorted(odd)} is not one of {', '.join(DECISIONS)}")


def run_checks(ctx: CheckContext, checks: list[Check] | None = None) -> ChecksOutcome:
    checks = registered_checks() if checks is None else checks
    n = len(ctx.rows)
    out = ChecksOutcome(findings=empty_findings(), final=np.full(n, "kept", dtype=object), why={},
                        groups=np.full(n, -1, dtype=np.int64))
    frames, pairs_a, pairs_b, owner = [], [], [], {}
    with threadpool_limits(limits=CHECK_THREADS):
        for check in checks:
            if not check.enabled(ctx.cfg) or (check.needs_pixels and not ctx.has_pixels):
                out.status.update(dict.fromkeys(check.writes, "off"))
                continue
            if not check.applies(ctx):
                out.status.update(dict.fromkeys(check.writes, "n/a"))
                continue
            off = set(check.values_off(ctx.cfg))
            out.status.update({value: "off" if value in off else "on" for value in check.writes})
            result = check.run(ctx)
            _check_result(check, result)
            out.ran.append(check.name)
            for value in (*check.writes, *result.findings["check"].unique().tolist()):
                out.review_order.setdefault(str(value), check.order)
            if len(result.findings):
                frames.append(result.findings)
            for key, value in result.counters.items():
                if key in owner:
                    raise ValueError(f"cleaning checks {owner[key]} and {check.name} both count {key!r}")
                owner[key] = check.name
                out.counters[key] = value
            if result.detail:
                if check.detail_key == "":
                    out.detail.update(result.detail)
                else:
                    out.detail[check.detail_key or check.name] = result.detail
            if result.same_split is not None:
                pairs_a.append(np.asarray(result.same_split[0], dtype=np.int64))
                pairs_b.append(np.asarray(result.same_split[1], dtype=np.int64))
    if frames:
        out.findings = pd.concat(frames, ignore_index=True)
    if pairs_a:
        out.groups = component_groups(n, np.concatenate(pairs_a), np.concatenate(pairs_b))
    worst: dict[str, int] = {}
    for item, chk, dec, det in out.findings[[ITEM_ID, "check", "decision", "detail"]].itertuples(index=False):
        worst[item] = max(worst.get(item, 0), DECISION_RANK[dec])
        if dec == "quarantined":
            out.why.setdefault(item, []).append(f"{chk.replace('_', ' ')}: {det}"[:300])
    out.final = np.array([DECISIONS[worst.get(i, 0)] for i in ctx.rows[ITEM_ID].to_numpy()], dtype=object)
    return out
