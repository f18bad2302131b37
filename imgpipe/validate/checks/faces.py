"""Review rows for the faces the download stage found (``check`` = ``face``).

Faces are removed before anything is stored (:mod:`imgpipe.privacy.raw`), so this check decides
nothing: every image that had a face is ``flagged`` for a person to look at what was blurred
(the score is the detector's best confidence, the detail the boxes at full resolution). It reads
``ctx.tables["faces"]``, the download stage's ``<raw>/privacy/faces.parquet``
(:func:`load_faces_table`), and writes nothing when that table is absent or empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID
from imgpipe.validate.checks.base import (
    Check,
    CheckContext,
    CheckResult,
    empty_findings,
    findings_frame,
    register,
)

FACES_TABLE = "privacy/faces.parquet"  # under paths.raw (imgpipe.privacy.raw.FACES_TABLE)


def load_faces_table(raw_dir: Path) -> pd.DataFrame | None:
    """The faces table for ``CheckContext.tables["faces"]``; None when the download wrote none."""
    path = Path(raw_dir) / FACES_TABLE
    return pd.read_parquet(path) if path.exists() else None


@register
class FacesCheck(Check):
    name = "faces"
    section = "faces"  # no params of its own: privacy.faces decided what happened to the faces
    writes = ("face",)
    order = 90

    def params(self, cfg):
        return None

    def enabled(self, cfg) -> bool:
        return True

    def applies(self, ctx: CheckContext) -> bool:
        """Only when the download stage found faces: otherwise skipped, no findings, no counters."""
        faces = ctx.tables.get("faces")
        return faces is not None and not faces.empty

    def run(self, ctx: CheckContext) -> CheckResult:
        faces = ctx.tables.get("faces")
        if faces is None or faces.empty:
            return CheckResult(empty_findings(), counters={"face_images_flagged": 0})
        position = {item: i for i, item in enumerate(ctx.rows[ITEM_ID].astype(str))}
        faces = faces[faces[ITEM_ID].astype(str).isin(position)]
        grouped = faces.sort_values([ITEM_ID, "x0", "y0"], kind="stable").groupby(ITEM_ID, sort=True)
        pos, score, detail = [], [], []
        for item, rows in grouped:
            pos.append(position[item])
            score.append(float(rows["score"].max()))
            boxes = "; ".join(f"({r.x0},{r.y0})-({r.x1},{r.y1}) {r.score:.2f}" for r in rows.itertuples())
            detail.append(f"{len(rows)} face(s) {rows['action'].iloc[0]}: {boxes}")
        findings = findings_frame(ctx.rows, np.asarray(pos, np.int64), "face", score, "flagged", detail=detail)
        return CheckResult(findings, counters={"face_images_flagged": len(pos)})
