"""`imgpipe review`: validate and evaluate findings merged with their source, tasks Label Studio
imports (no made-up annotator), and every task's image written out where it resolves to a file
that the labels stage matches back to its item (packed files and array images alike)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import tarfile
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgpipe import review as export
from imgpipe.contracts import REVIEW_COLUMNS
from imgpipe.errors import PipelineError
from imgpipe.evaluate.label_errors import review_rows
from imgpipe.io import write_json, write_parquet
from imgpipe.labels.match import ItemMatcher
from imgpipe.labelstudio.images import export_images
from imgpipe.labelstudio.write import TaskProposal, tasks
from imgpipe.rawdata import SourceInfo, pack_images

from factories import write_labels

CLASSES = ["cat", "dog"]
IDS = [f"images/{c}/{i}.png" for c in CLASSES for i in range(4)]


def _finding(item, check, score, suggested=""):
    return {"item_id": item, "source_path": item, "check": check, "score": score, "decision": "flagged",
            "group_id": "", "suggested_label": suggested, "suggested_score": 0.9 if suggested else 0.0,
            "detail": check}


def _errors(rows):
    return pd.DataFrame([{"rank": k + 1, "item_id": i, "source_path": i, "label": g, "suggested_label": s,
                          "label_score": p, "suggested_score": 1 - p} for k, (i, g, s, p) in enumerate(rows)])


def _raw_files(root: Path) -> Path:
    files = root / "files"
    for k, item in enumerate(IDS):
        (files / item).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6, 3), k * 20, np.uint8)).save(files / item)
    write_json(root / "source.json", SourceInfo(source="t", kind="path", layout="files").to_json())
    pack_images(root)
    return root


def test_annotations_carry_no_annotator_label_studio_would_reject():
    (task,) = tasks([TaskProposal(image="a.png", label="dog", score=0.7, annotation="cat")], "v")
    assert "completed_by" not in task["annotations"][0]
    assert task["annotations"][0]["result"][0]["value"]["choices"] == ["cat"]
    assert task["predictions"][0]["result"][0]["value"]["choices"] == ["dog"]


def test_network_findings_merge_first_and_say_where_they_came_from():
    review = pd.DataFrame([_finding(IDS[0], "label_issue", 0.1, "dog"), _finding(IDS[1], "near_duplicate", 0.9)],
                          columns=list(REVIEW_COLUMNS))
    evaluated = review_rows(_errors([(IDS[0], "cat", "dog", 0.05), (IDS[5], "dog", "cat", 0.2)]))
    labels = pd.DataFrame({"item_id": IDS, "label": ["cat"] * 4 + ["dog"] * 4})
    props = export.build_proposals(export.merge_findings(review, evaluated), labels, IDS, set(), False)
    flagged = [(p.image, p.data["check"], p.data["source"]) for p in props if "check" in p.data]
    # The network's suspects first (least self-confident first); an image both found says so.
    assert flagged == [(IDS[0], "test_label_error", "evaluate+validate"), (IDS[5], "test_label_error", "evaluate"),
                       (IDS[1], "near_duplicate", "validate")]
    assert props[0].label == "dog" and props[0].annotation == "cat"
    assert len(props) == len(IDS) and {p.image for p in props} == set(IDS)


def test_review_command_writes_images_that_every_task_resolves_to(tmp_path, monkeypatch, capsys):
    raw = _raw_files(tmp_path / "data" / "raw")
    write_parquet(pd.DataFrame({"item_id": IDS}), tmp_path / "data" / "preprocessed" / "manifest.parquet")
    write_labels(tmp_path / "data" / "labels", IDS, [0] * 4 + [1] * 4, CLASSES)
    write_parquet(pd.DataFrame([_finding(IDS[2], "label_issue", 0.1, "dog")], columns=list(REVIEW_COLUMNS)),
                  tmp_path / "data" / "validated" / "review.parquet")
    (tmp_path / "metrics" / "eval").mkdir(parents=True)
    _errors([(IDS[6], "dog", "cat", 0.01)]).to_csv(tmp_path / "metrics/eval/label_errors.csv", index=False)
    (tmp_path / "params.yaml").write_text("paths: {}\n")
    monkeypatch.chdir(tmp_path)
    prefix = "/data/local-files/?d=review-images/"
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args(["--label-studio", "annotations/review.json", "--images", "annotations/review-images",
                              "--image-prefix", prefix])
    assert export.run(args) == 0
    assert "1 of them by the trained network" in capsys.readouterr().out
    written = json.loads((tmp_path / "annotations/review.json").read_text())
    assert [t["data"]["item_id"] for t in written[:2]] == [IDS[6], IDS[2]]
    assert written[0]["data"]["source"] == "evaluate" and written[1]["data"]["source"] == "validate"
    matcher = ItemMatcher(IDS)
    for task in written:
        image = task["data"]["image"]
        assert image.startswith(prefix)
        path = tmp_path / "annotations" / "review-images" / unquote(image[len(prefix):])
        assert path.is_file(), image
        assert Image.open(path).size == (6, 6)  # the original bytes, out of the pack
        assert matcher.match(image).item_id == task["data"]["item_id"]
    # A second run replaces the folder it wrote; a folder a person made is never overwritten.
    assert export.run(args) == 0
    mine = tmp_path / "mine"
    (mine / "keep.txt").parent.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(PipelineError, match="was not written by `imgpipe review`"):
        export_images(raw, IDS[:1], mine)
    assert (mine / "keep.txt").read_text() == "mine"


def _archives():
    spec = importlib.util.spec_from_file_location("archives", Path(__file__).parents[1] / "download" / "archives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_array_images_are_written_as_pngs_that_match_back(tmp_path):
    raw = tmp_path / "raw"
    with tarfile.open(fileobj=io.BytesIO(_archives().cifar10_tarball(per_batch=3)), mode="r:gz") as tar:
        tar.extractall(raw / "files", filter="data")
    write_json(raw / "source.json", SourceInfo(source="cifar10", kind="official", layout="cifar10").to_json())
    items = ["cifar-10-batches-py/data_batch_2#1", "cifar-10-batches-py/test_batch#2"]
    names = export_images(raw, items, tmp_path / "out")
    assert names == {i: i + ".png" for i in items}
    from imgpipe.arrayfiles import load_cifar_batch

    for item in items:
        rel, index = item.split("#")
        pixels = np.asarray(Image.open(tmp_path / "out" / names[item]))
        assert np.array_equal(pixels, load_cifar_batch(raw / "files" / rel)[0][int(index)])
    matcher = ItemMatcher([f"cifar-10-batches-py/data_batch_{b}#{i}" for b in (1, 2) for i in range(3)]
                          + [f"cifar-10-batches-py/test_batch#{i}" for i in range(3)])
    from urllib.parse import quote

    for item in items:
        assert matcher.match("/data/local-files/?d=review/" + quote(names[item], safe="/")).item_id == item


def test_an_item_id_that_leaves_the_folder_is_refused():
    from imgpipe.labelstudio.images import image_file_name

    for bad in ("../x.png", "/etc/passwd", "a/../../b"):
        with pytest.raises(PipelineError, match="not a relative path"):
            image_file_name(bad, False)
