"""Suspected wrong labels (confident learning on K-fold out-of-sample probabilities):
:mod:`imgpipe.validate.label_issues` as a check. Params: ``validate.label_issues``."""

from __future__ import annotations

import numpy as np

from imgpipe.validate.checks.base import POLICY_DECISION, Check, CheckContext, CheckResult, register
from imgpipe.validate.label_issues import label_issue_findings


@register
class LabelIssuesCheck(Check):
    name = "label_issues"
    section = "label_issues"
    writes = ("label_issue",)
    order = 60
    needs_pixels = True
    detail_key = ""  # ``label_model_oos_accuracy`` at the top of quality_detail.json, as before

    def run(self, ctx: CheckContext) -> CheckResult:
        p = self.params(ctx.cfg)
        rows = ctx.rows.assign(label_index=ctx.rows["label_index"].astype(np.int64))
        found, accuracy = label_issue_findings(rows, ctx.pixel_source(), list(ctx.classes), p, POLICY_DECISION[p.on_issue])
        flagged = int(found["decision"].isin(["flagged", "dropped", "quarantined"]).sum()) if len(found) else 0
        return CheckResult(findings=found, counters={"label_issues": flagged},
                           detail={"label_model_oos_accuracy": round(accuracy, 4)})
