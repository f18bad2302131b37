"""Evaluate's scoring (the train tests moved to tests/training/)."""

import numpy as np
import pandas as pd
import pytest

from imgpipe.evaluate.metrics import prediction_rows, score


def test_score_and_prediction_rows():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    headline, per_class = score(y_true, y_pred, ["a", "b", "c"])
    assert headline["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert headline["recall_macro"] == pytest.approx((0.5 + 1 + 0.5) / 3, abs=1e-6)
    assert set(headline) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "test_images"}
    assert per_class["b"]["support"] == 2
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "source_path": [f"s{k}" for k in range(6)]})
    rows = prediction_rows(items, y_true, y_pred, ["a", "b", "c"])
    assert rows.iloc[1].to_dict() == {"item_id": "i1", "source_path": "s1", "actual": "a", "predicted": "b"}
