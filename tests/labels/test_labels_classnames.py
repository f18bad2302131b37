"""Class names written several ways (cat, Cat, 'Cat ') are one class: merged with a report line,
or refused (labels.on_class_variant); the summary names the class list and the small classes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imgpipe.errors import LabelError
from imgpipe.labels.classnames import merge_class_variants
from imgpipe.labels.importer import import_labels
from imgpipe.labeltable import vote, votes_frame

IMAGES = [f"img_{i}.png" for i in range(7)]
SPELLINGS = ["cat", "cat", "Cat ", "CAT", "dog", "dog", "dog"]


@pytest.fixture
def export(tmp_path, ls):
    # The reported case: a Label Studio export with 'Cat ' and 'CAT' beside 'cat'.
    tasks = [ls.task(i + 1, f"/data/upload/1/{name}", [ls.annotation(10 + i, 1, [label], task=i + 1)])
             for i, (name, label) in enumerate(zip(IMAGES, SPELLINGS, strict=True))]
    # ls_annotation keeps the spaces: the reader sees exactly what Label Studio wrote.
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


@pytest.fixture
def raw(make_raw, arrays):
    return make_raw({name: arrays.png(i) for i, name in enumerate(IMAGES)})


def test_variants_merge_into_the_most_used_spelling_with_a_report(raw, export, tmp_path, cfg):
    # Before: three classes (CAT, Cat, cat) and no word about it.
    summary = import_labels(raw, tmp_path / "out", cfg(path=str(export)))
    assert json.loads((tmp_path / "out/classes.json").read_text()) == {"classes": ["cat", "dog"]}
    labels = pd.read_parquet(tmp_path / "out/labels.parquet")
    assert labels["label"].tolist() == ["cat"] * 4 + ["dog"] * 3
    assert summary["class variants merged"] == "'CAT' (1 vote), 'Cat' (1 vote) -> 'cat'"
    assert summary["metrics"]["class_variants_merged"] == 1
    assert summary["classes"] == "2 (inferred): cat, dog"
    assert summary["classes under 5 images"] == "'dog' 3, 'cat' 4"


def test_variants_fail_by_policy_in_one_line(raw, export, tmp_path, cfg):
    with pytest.raises(LabelError, match=r"export\.json: class names that differ only by case or spaces: "
                                         r"'CAT' \(1 vote\), 'Cat' \(1 vote\) -> 'cat'; .*on_class_variant: merge"):
        import_labels(raw, tmp_path / "out", cfg(path=str(export), on_class_variant="fail"))
    assert not (tmp_path / "out").exists()


def test_the_given_class_list_spelling_wins_and_may_not_hold_variants(raw, export, tmp_path, cfg):
    import_labels(raw, tmp_path / "out", cfg(path=str(export), classes=["Cat", "dog"]))
    assert pd.read_parquet(tmp_path / "out/labels.parquet")["label"].tolist() == ["Cat"] * 4 + ["dog"] * 3
    with pytest.raises(LabelError, match=r"labels.classes: 'cat' and 'Cat' differ only by case"):
        import_labels(raw, tmp_path / "out2", cfg(path=str(export), classes=["cat", "Cat", "dog"]))


def test_merge_ties_pick_the_first_sorted_spelling_whatever_the_row_order():
    rows = [vote("a", "Dog", "", "label", 1, "line 1"), vote("b", "dog", "", "label", 2, "line 2")]
    for order in (rows, rows[::-1]):
        merged, variants = merge_class_variants(votes_frame(order), (), "merge", "f.csv")
        assert set(merged["label"]) == {"Dog"} and variants[0].kept == "Dog"
