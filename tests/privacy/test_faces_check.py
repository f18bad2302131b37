"""The ``face`` review rows: one flagged row per image that had a face, none without a table."""

from __future__ import annotations

import pandas as pd

from imgpipe.validate.checks import CheckContext, registered_checks
from imgpipe.validate.checks.faces import FacesCheck, load_faces_table


def test_face_rows_flag_each_image_with_its_boxes(tmp_path):
    assert any(isinstance(c, FacesCheck) for c in registered_checks())
    rows = pd.DataFrame({"item_id": ["a.jpg", "b.jpg", "c.jpg"], "source_path": ["a.jpg", "b.jpg", "c.jpg"]})
    faces = pd.DataFrame({"item_id": ["b.jpg", "b.jpg", "dropped.jpg"], "x0": [5, 40, 1], "y0": [5, 9, 1],
                          "x1": [20, 60, 9], "y1": [30, 33, 9], "score": [0.9, 0.7, 0.8], "action": ["blur"] * 3})
    (tmp_path / "privacy").mkdir()
    faces.to_parquet(tmp_path / "privacy" / "faces.parquet")
    ctx = CheckContext(rows=rows, classes=[], cfg=None, tables={"faces": load_faces_table(tmp_path)})
    result = FacesCheck().run(ctx)
    assert result.findings[["item_id", "check", "decision"]].values.tolist() == [["b.jpg", "face", "flagged"]]
    assert result.findings["score"].tolist() == [0.9]
    assert result.findings["detail"].item() == "2 face(s) blur: (5,5)-(20,30) 0.90; (40,9)-(60,33) 0.70"
    assert result.counters == {"face_images_flagged": 1}
    none = FacesCheck().run(CheckContext(rows=rows, classes=[], cfg=None, tables={}))
    assert none.findings.empty and load_faces_table(tmp_path / "nothing") is None
    assert FacesCheck().applies(ctx) and not FacesCheck().applies(CheckContext(rows=rows, classes=[], cfg=None))
