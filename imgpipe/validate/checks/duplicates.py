"""Exact and near duplicates, and split leakage, as one check.

Exact duplicates (same ``pixel_sha256``) and near duplicates (:mod:`imgpipe.validate.duplicates`)
are joined transitively into groups, because a group decides its members together: one is kept,
the others are flagged or dropped, members with different labels follow the conflict policy, and
members outside the group's highest source-fixed split (a training copy of a source-test image)
leave as ``leakage``. Every group also goes back to the loop as ``same_split`` pairs, so it lands
in one split.

Params: ``validate.exact_duplicates`` (always on) and ``validate.near_duplicates`` (``enabled``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID, LABEL, SOURCE_SPLIT
from imgpipe.validate.checks.base import (
    POLICY_DECISION,
    Check,
    CheckContext,
    CheckResult,
    empty_findings,
    findings_frame,
    register,
)
from imgpipe.validate.crop_duplicates import add_crop_pairs, effective_max_crop
from imgpipe.validate.duplicates import component_groups, exact_groups, near_duplicate_pairs

SOURCE_RANK = {"test": 2, "val": 1}  # a group keeps its members in the highest source split
MAX_NAMED = 11  # group members named in a finding's detail


@register
class DuplicatesCheck(Check):
    name = "duplicates"
    section = "exact_duplicates"  # and near_duplicates, read below
    writes = ("exact_duplicate", "leakage", "near_duplicate")
    order = 20
    needs_pixels = False  # exact duplicates need none; near duplicates use them when they can be read

    def values_off(self, cfg) -> tuple[str, ...]:
        return () if cfg.near_duplicates.enabled else ("near_duplicate",)

    def run(self, ctx: CheckContext) -> CheckResult:
        cfg = ctx.cfg
        df = ctx.rows
        n = len(df)
        near_on = bool(cfg.near_duplicates.enabled)
        exact = exact_groups(df["pixel_sha256"])
        # Near duplicates among one representative per exact group (the others are identical).
        pairs_a = pairs_b = np.zeros(0, np.int64)
        sims = np.zeros(0)
        reps = np.nonzero((exact < 0) | (exact == np.arange(n)))[0]
        if near_on and ctx.has_pixels and len(reps) > 1:
            nd = cfg.near_duplicates
            pairs = near_duplicate_pairs(ctx.pixel_source(reps), nd.threshold, nd.max_shift, nd.tables, nd.bits,
                                         seed=cfg.seed)
            pairs_a = reps[pairs["a"].to_numpy()]
            pairs_b = reps[pairs["b"].to_numpy()]
            sims = pairs["similarity"].to_numpy(dtype=np.float64)
            if effective_max_crop(nd) > 0:  # second pass: cropped, rescaled, colour-shifted copies
                pairs_a, pairs_b, sims = add_crop_pairs(ctx, reps, nd, cfg.seed, pairs_a, pairs_b, sims)
        exact_a = np.nonzero(exact >= 0)[0]
        same_a = np.concatenate([pairs_a, exact_a])
        same_b = np.concatenate([pairs_b, exact[exact_a]])
        groups = component_groups(n, same_a, same_b)
        best_sim = np.zeros(n)
        np.maximum.at(best_sim, pairs_a, sims)
        np.maximum.at(best_sim, pairs_b, sims)
        findings, counters = self._decide(df, exact, groups, best_sim, cfg)
        if not near_on:  # an off check reports no count (not a count of 0)
            del counters["near_duplicate_groups"]
        return CheckResult(findings=findings, counters=counters, same_split=(same_a, same_b))

    @staticmethod
    def _decide(df, exact: np.ndarray, groups: np.ndarray, best_sim: np.ndarray, cfg):
        source = df[SOURCE_SPLIT].fillna("").astype(str).to_numpy()
        labels = df[LABEL].astype(str).to_numpy()
        ids = df[ITEM_ID].to_numpy()
        counts = {"exact_duplicate_groups": 0, "near_duplicate_groups": 0, "leakage_removed": 0}
        frames = []
        for g in np.unique(groups[groups >= 0]):
            members = np.nonzero(groups == g)[0]
            is_exact = bool((exact[members] >= 0).all() and len(set(exact[members])) == 1)
            counts["exact_duplicate_groups" if is_exact else "near_duplicate_groups"] += 1
            # Leakage: members outside the group's highest source-fixed split leave training.
            top = max(SOURCE_RANK.get(s, 0) for s in source[members])
            leak = np.array([SOURCE_RANK.get(s, 0) < top for s in source[members]])
            conflict = len(set(labels[members])) > 1
            policy_dup = cfg.exact_duplicates.on_duplicate if is_exact else cfg.near_duplicates.on_duplicate
            policy_conf = cfg.exact_duplicates.on_conflict if is_exact else cfg.near_duplicates.on_conflict
            keeper = members[~leak][0]
            kind = "exact_duplicate" if is_exact else "near_duplicate"
            checks, decisions, details = [], [], []
            names = ids[members]
            for k, (m, leaked) in enumerate(zip(members, leak, strict=True)):
                if leaked:
                    check, decision = "leakage", "dropped"
                elif conflict:
                    check, decision = kind, POLICY_DECISION[policy_conf]
                elif m == keeper:
                    check, decision = kind, "kept"
                else:
                    check, decision = kind, POLICY_DECISION[policy_dup] if policy_dup == "drop" else "flagged"
                others = ", ".join(names[j] for j in range(min(len(names), MAX_NAMED)) if j != k)
                if len(names) > MAX_NAMED:
                    others += f" and {len(names) - MAX_NAMED} more"
                what = "different labels: " + "/".join(sorted(set(labels[members]))) + "; " if conflict else ""
                if leaked:  # this member's own check, not the last one the loop above set
                    what += f"duplicates a source-{'test' if top == 2 else 'val'} image; "
                checks.append(check)
                decisions.append(decision)
                details.append(f"{what}same as {others}"[:500])
            counts["leakage_removed"] += int(leak.sum())
            score = np.where(exact[members] >= 0, 1.0, np.round(best_sim[members], 6))
            frames.append(findings_frame(df, members, checks, score, decisions, f"dup-{ids[g]}", "", details))
        findings = pd.concat(frames, ignore_index=True) if frames else empty_findings()
        return findings, counts
