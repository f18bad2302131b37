"""The review contact sheets draw an image's boxes on a box finding's tile, the flagged one in red."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from imgpipe.contracts import REVIEW_COLUMNS
from imgpipe.validate.sheets import PAD, TILE, draw_sheets


def test_box_findings_get_a_sheet_with_their_boxes_drawn(tmp_path):
    pixels = np.full((2, 16, 16, 3), 40, dtype=np.uint8)
    review = pd.DataFrame([["a.png", "a.png", "box_tiny", 1.0, "flagged", "a.png#box1", "", np.nan, "1 x 1 px"]],
                          columns=list(REVIEW_COLUMNS))
    boxes = pd.DataFrame({"item_id": ["a.png", "a.png"], "box_id": [0, 1], "label": ["cat", "cat"],
                          "xmin": [0.0, 50.0], "ymin": [0.0, 50.0], "xmax": [40.0, 90.0], "ymax": [40.0, 90.0],
                          "image_width": [100, 100], "image_height": [100, 100]})
    names = draw_sheets(review, pixels, {"a.png": 0, "b.png": 1}, {"a.png": "cat"}, tmp_path, boxes=boxes)
    assert "box_tiny.png" in names
    sheet = np.asarray(Image.open(tmp_path / "box_tiny.png").convert("RGB"))
    tile = sheet[18 + PAD: 18 + PAD + TILE, PAD: PAD + TILE]
    red = (tile[..., 0] > 200) & (tile[..., 1] < 60)
    yellow = (tile[..., 0] > 200) & (tile[..., 1] > 180)
    assert red.any() and yellow.any()  # box 1 (the finding) in red, box 0 in yellow
    ys, xs = np.nonzero(red)
    assert xs.min() >= TILE * 0.45 and ys.min() >= TILE * 0.45  # the red box is the lower-right one


def test_no_box_sheet_without_box_findings(tmp_path):
    review = pd.DataFrame(columns=list(REVIEW_COLUMNS))
    names = draw_sheets(review, None, {}, {}, tmp_path)
    assert not any(n.startswith("box_") for n in names)
