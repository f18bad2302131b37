"""Outliers from the manifest's statistics (dark, overexposed, near-constant, blurry, odd size):
:mod:`imgpipe.validate.outliers` as a check. Params: ``validate.outliers``; reads no pixels."""

from __future__ import annotations

from imgpipe.contracts import ITEM_ID
from imgpipe.validate.checks.base import POLICY_DECISION, Check, CheckContext, CheckResult, register
from imgpipe.validate.outliers import CHECKS, outlier_findings


@register
class OutliersCheck(Check):
    name = "outliers"
    section = "outliers"
    writes = CHECKS
    order = 50
    detail_key = ""  # ``outlier_checks`` at the top of quality_detail.json, where it always was

    def run(self, ctx: CheckContext) -> CheckResult:
        p = self.params(ctx.cfg)
        found = outlier_findings(ctx.rows, p, POLICY_DECISION[p.on_outlier])
        per_check = found["check"].value_counts()
        return CheckResult(
            findings=found,
            counters={"outliers": int(found[ITEM_ID].nunique())},
            detail={"outlier_checks": {c: int(per_check[c]) for c in sorted(per_check.index)}},
        )
