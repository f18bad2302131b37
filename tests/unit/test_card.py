"""The dataset card: content hash, counts, provenance, checks read generically, the stage's bytes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from imgpipe.card import CARD_JSON, CARD_MD, build_card, content_hash, dataset_name, render_markdown
from imgpipe.errors import PipelineError
from imgpipe.io import write_json, write_parquet

CLASSES = ["cat", "dog", "emu"]
SOURCE = {"source": "https://example.invalid/pets.tar.gz", "kind": "url", "layout": "files",
          "url": "https://example.invalid/pets.tar.gz", "final_url": "https://cdn.example.invalid/pets.tar.gz",
          "sha256": "ab" * 32, "size_bytes": 1234, "classes": None, "label_file": None, "extra": {}}


def dataset(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": [f"img/{i:03d}.png" for i in range(n)],
        "source_path": [f"img/{i:03d}.png" for i in range(n)],
        "pixel_sha256": [f"{i:064x}" for i in range(n)],
        "label": [CLASSES[i % 2] for i in range(n)],  # no emu at all
        "label_index": [i % 2 for i in range(n)],
        "split": ["train"] * (n - 4) + ["val", "val", "test", "test"],
    })


def quarantine() -> pd.DataFrame:
    return pd.DataFrame({"item_id": ["img/900.png", "img/901.png"], "source_path": ["a", "b"],
                         "reasons": ["blank image; no label", "no label"]})


def card(ds=None, quality=None, expectations=None) -> dict:
    return build_card(
        dataset=dataset() if ds is None else ds, quarantine=quarantine(), classes=CLASSES, source=SOURCE,
        quality=quality or {"images_valid": 12, "images_quarantined": 2, "quarantine_by_reason": {}},
        expectations=expectations or {"suite": "expectations/image_dataset.json", "results": [
            {"expectation": "expect_column_values_to_not_be_null", "column": "label", "level": "row",
             "reason": "no label", "success": False, "unexpected": 2}]},
    )


def test_content_hash_follows_images_labels_and_splits_not_row_order():
    base = card()["content_hash"]
    shuffled = dataset().sample(frac=1.0, random_state=3)
    assert card(shuffled)["content_hash"] == base
    for column, value in (("label", "emu"), ("split", "test"), ("pixel_sha256", "f" * 64)):
        changed = dataset()
        changed.loc[0, column] = value
        assert card(changed)["content_hash"] != base, column
    assert card(dataset().iloc[1:])["content_hash"] != base
    assert content_hash([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_counts_per_split_and_class_include_zeros_and_provenance_is_kept():
    c = card()
    assert c["classes"] == CLASSES
    assert c["counts"] == {"train": {"cat": 4, "dog": 4, "emu": 0}, "val": {"cat": 1, "dog": 1, "emu": 0},
                           "test": {"cat": 1, "dog": 1, "emu": 0}}
    assert c["split_totals"] == {"train": 8, "val": 2, "test": 2} and c["images"] == 12
    assert c["source"]["final_url"] == SOURCE["final_url"] and c["source"]["sha256"] == SOURCE["sha256"]
    assert c["removed"] == {"quarantined": 2, "quarantine_reasons": {"blank image": 1, "no label": 2}}


def test_quality_metrics_and_check_results_are_carried_generically():
    """A key another stage adds to data_quality.json (or to a check result) reaches the card as is."""
    quality = {"images_valid": 12, "near_duplicates": {"groups": 3, "removed": 4}, "new_check": 0.25}
    c = card(quality=quality, expectations={"suite": "s.json", "results": [
        {"expectation": "expect_x", "success": True, "unexpected": 0, "brand_new_field": "kept"}]})
    assert c["quality"] == quality
    md = render_markdown(c)
    assert "| near_duplicates.groups | 3 |" in md and "| new_check | 0.25 |" in md
    assert "brand_new_field" in md and "kept" in md
    assert "| emu | 0 | 0 | 0 | 0 |" in md
    assert SOURCE["final_url"] in md and c["content_hash"] in md


@pytest.mark.parametrize(("source", "name"), [
    ("digits", "digits"), ("cifar10", "cifar10"), ("https://example.invalid/a/pets.tar.gz", "pets"),
    ("s3://bucket/photos/", "photos"), ("../shared/data/cifar10-dev.tar.gz", "cifar10-dev"),
    ("urls:lists/crawl.csv.gz", "crawl"), ("", "dataset")])
def test_the_card_is_named_after_its_source(source, name):
    assert dataset_name({"source": source}) == name


def test_a_check_that_was_off_is_not_listed_as_zero():
    # validate leaves an off check's counter out of data_quality.json; the card lists what is there.
    text = render_markdown(card(quality={"images_valid": 12, "exact_duplicate_groups": 0}))
    assert "| exact_duplicate_groups | 0 |" in text and "near_duplicate_groups" not in text


def test_a_dataset_without_the_identity_columns_is_one_clear_error():
    with pytest.raises(PipelineError, match=r"dataset.parquet: missing column\(s\) pixel_sha256.*dvc repro -f validate"):
        card(dataset().drop(columns=["pixel_sha256"]))
    bad = dataset()
    bad.loc[0, "item_id"] = "a\tb"
    with pytest.raises(PipelineError, match="tab or newline"):
        card(bad)


def test_the_stage_writes_the_same_bytes_twice(tmp_path, monkeypatch):
    from stages import card as stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("paths: {}\n")
    write_parquet(dataset(), tmp_path / "data/validated/dataset.parquet")
    write_parquet(quarantine(), tmp_path / "data/validated/quarantine.parquet")
    write_json(tmp_path / "data/validated/expectations.json", {"suite": "s.json", "results": []})
    write_json(tmp_path / "data/raw/source.json", SOURCE)
    write_json(tmp_path / "data/labels/classes.json", {"classes": CLASSES})
    write_json(tmp_path / "metrics/data_quality.json", {"images_valid": 12})
    # the per-class view's inputs (imgpipe.perclass): every finding, every image's label, what ran
    write_parquet(pd.DataFrame({"item_id": ["img/001.png"], "check": ["ood"], "decision": ["flagged"]}),
                  tmp_path / "data/validated/review.parquet")
    write_parquet(dataset()[["item_id", "label"]], tmp_path / "data/labels/labels.parquet")
    write_json(tmp_path / "data/validated/quality_detail.json", {"check_status": [{"check": "ood", "status": "on"}],
                                                                      "max_class_share": 0.9})
    files = (CARD_JSON, CARD_MD, "per_class.csv", "per_class.png")
    stage.main()
    first = {name: (tmp_path / "data/card" / name).read_bytes() for name in files}
    stage.main()
    assert {name: (tmp_path / "data/card" / name).read_bytes() for name in files} == first
    assert json.loads(first[CARD_JSON])["per_class"]["classes"][1]["checks"]["ood"]["flagged"] == 1  # a dog
    assert b"## Per class: balance and what the checks found" in first[CARD_MD]
    assert json.loads(first[CARD_JSON])["images"] == 12
    assert first[CARD_MD].startswith(b"# Dataset card: pets\n")  # the source's name, not "dataset"


def test_the_stage_names_a_corrupt_input(tmp_path, monkeypatch, capsys):
    from stages import card as stage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("paths: {}\n")
    write_parquet(dataset(), tmp_path / "data/validated/dataset.parquet")
    write_parquet(quarantine(), tmp_path / "data/validated/quarantine.parquet")
    write_json(tmp_path / "data/labels/classes.json", {"classes": CLASSES})
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/source.json").write_text('{"source": ')
    with pytest.raises(SystemExit) as exc:
        stage.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data/raw/source.json: corrupt or truncated" in err[0]
    assert "dvc repro -f download" in err[0]
