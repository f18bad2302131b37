"""The offline HTML report: counts print as people write them, findings count what was acted on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgpipe.validate.checks.base import findings_frame
from imgpipe.validate.sheets import write_report


def test_counts_are_integers_and_kept_rows_are_not_findings(tmp_path):
    rows = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "source_path": [f"i{k}" for k in range(6)]})
    review = pd.concat([
        findings_frame(rows, np.arange(4), "near_duplicate", 0.99, ["kept", "flagged", "flagged", "flagged"], "dup-i0"),
        findings_frame(rows, np.array([5]), "label_issue", 0.01, "quarantined"),
    ], ignore_index=True)
    quality = {"images_decoded": 1797, "images_flagged": 550, "reject_fraction": 0.0125}
    write_report(tmp_path / "report.html", "t", quality, [], review, [])
    page = (tmp_path / "report.html").read_text()
    assert "<td>1797</td>" in page and "<td>550</td>" in page and "<td>0.0125</td>" in page
    assert "1797.0" not in page
    assert "Findings: near_duplicate (3 flagged, 1 kept)" in page
    assert "Findings: label_issue (1 quarantined)" in page
