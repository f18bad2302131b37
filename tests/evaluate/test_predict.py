"""`imgpipe predict`: inputs of every kind, the CSV, Label Studio tasks, and one clear line per bad input."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalkit import CLASSES, png, random_images, save_checkpoint

from imgpipe.cli import main
from imgpipe.evaluate.metrics import softmax
from imgpipe.inference import load_checkpoint, predict_logits
from imgpipe.preprocess.decode import to_model_pixels


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml, no data/labels: the defaults apply


def _predict(*args: str) -> int:
    return main(["predict", *args])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("imgpipe predict: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_folder_to_csv_matches_the_model_on_the_decoded_pixels(image_dir, model_file, tmp_path):
    assert _predict(str(image_dir), "--out", "p.csv") == 0
    rows = pd.read_csv(tmp_path / "p.csv")
    assert rows.columns.tolist() == ["path", "label", "confidence", "error", *(f"prob_{c}" for c in CLASSES)]
    names = [Path(p).relative_to(image_dir).as_posix() for p in rows["path"]]
    assert names == ["img0.png", "img2.png", "img4.png", "sub/img1.png", "sub/img3.png", "sub/img5.png"]
    model, checkpoint = load_checkpoint(model_file)
    from imgpipe.params.preprocess import PreprocessParams

    cfg = PreprocessParams(size=(16, 16))
    pixels = np.stack([to_model_pixels((image_dir / n).read_bytes(), cfg) for n in names])
    probs = softmax(predict_logits(model, pixels, 4).numpy())
    assert rows["label"].tolist() == [CLASSES[k] for k in probs.argmax(1)]
    np.testing.assert_allclose(rows[[f"prob_{c}" for c in CLASSES]], probs, atol=1e-6)
    np.testing.assert_allclose(rows["confidence"], probs.max(1), atol=1e-6)
    assert rows["error"].isna().all()


def test_archive_list_file_and_single_image(image_dir, model_file, tmp_path):
    with tarfile.open(tmp_path / "batch.tar.gz", "w:gz") as tar:
        tar.add(image_dir, arcname="batch")
    listing = tmp_path / "todo.txt"
    listing.write_text("# to label\nimages/img0.png\n\nimages/missing.png\n")
    assert _predict("batch.tar.gz", "todo.txt", "images/sub/img1.png", "--out", "p.csv") == 0
    rows = pd.read_csv(tmp_path / "p.csv")
    assert rows["path"].tolist()[:6] == [f"batch.tar.gz/batch/{n}" for n in
                                         ("img0.png", "img2.png", "img4.png", "sub/img1.png", "sub/img3.png", "sub/img5.png")]
    assert rows["path"].tolist()[6:] == ["images/img0.png", "images/missing.png", "images/sub/img1.png"]
    assert rows.loc[7, "error"] == "no such file" and pd.isna(rows.loc[7, "label"])
    # the same image through the archive, the list and directly: the same probabilities
    assert rows.loc[0, "prob_ant"] == rows.loc[6, "prob_ant"]
    assert rows.loc[3, "prob_bee"] == rows.loc[8, "prob_bee"]


def test_label_studio_tasks_most_uncertain_first(image_dir, model_file, tmp_path):
    assert _predict(str(image_dir), "--out", "p.csv", "--label-studio", "tasks.json", "--label-config", "config.xml",
                    "--image-prefix", "/data/local-files/?d=") == 0
    probs = pd.read_csv(tmp_path / "p.csv").set_index("path").filter(like="prob_")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert [t["id"] for t in tasks] == list(range(1, 7))
    margins = []
    for task in tasks:
        path = task["data"]["image"].removeprefix("/data/local-files/?d=")
        top = sorted(probs.loc[path], reverse=True)
        margins.append(top[0] - top[1])
        (prediction,) = task["predictions"]
        assert prediction["model_version"].startswith("lenet-") and prediction["score"] == pytest.approx(top[0], abs=1e-6)
        assert prediction["result"][0]["type"] == "choices"
        assert prediction["result"][0]["value"]["choices"] == [probs.loc[path].idxmax().removeprefix("prob_")]
        assert "annotations" not in task  # predictions are never ground truth
    assert margins == sorted(margins)
    config = (tmp_path / "config.xml").read_text()
    assert all(f'<Choice value="{c}"/>' in config for c in CLASSES) and 'toName="image"' in config

    assert _predict(str(image_dir), "--label-studio", "by_entropy.json", "--order", "entropy") == 0
    entropy = []
    for task in json.loads((tmp_path / "by_entropy.json").read_text()):
        p = probs.loc[task["data"]["image"]].to_numpy()
        entropy.append(float(-(p * np.log(p)).sum()))
    assert entropy == sorted(entropy, reverse=True)
    assert not (tmp_path / "predictions.csv").exists()  # --label-studio alone writes no CSV


def test_corrupt_file_is_an_error_row_and_one_line(image_dir, model_file, tmp_path, capsys):
    (image_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert _predict(str(image_dir), "--out", "p.csv") == 0
    line = _one_error_line(capsys)
    assert "1 of 7 images could not be read" in line and "broken.jpg" in line
    rows = pd.read_csv(tmp_path / "p.csv").set_index("path")
    broken = rows.loc[str(image_dir / "broken.jpg")]
    assert pd.isna(broken["label"]) and broken["error"] and rows["label"].notna().sum() == 6
    # nothing readable at all: the CSV still says why, and the exit status is 1
    assert _predict(str(image_dir / "broken.jpg"), "--out", "only.csv") == 1
    assert "broken.jpg" in _one_error_line(capsys)


def test_empty_folder_one_line(model_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no images here")
    assert _predict("empty", "--out", "p.csv") == 1
    assert _one_error_line(capsys).startswith("imgpipe predict: empty: no images in this folder")
    assert not (tmp_path / "p.csv").exists()


def test_missing_model_one_line(image_dir, capsys):
    assert _predict(str(image_dir)) == 1
    line = _one_error_line(capsys)
    assert "models/model.pt: no such model" in line and "dvc repro train" in line
    # Run from another folder: the line names the path it looked at and the folder it ran in.
    assert f"({Path.cwd() / 'models' / 'model.pt'}, from {Path.cwd()})" in line


def test_a_model_with_non_finite_weights_is_refused_in_one_line(image_dir, tmp_path, capsys):
    import torch

    path = save_checkpoint(tmp_path / "diverged.pt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["1.classifier.5.bias"][0] = float("nan")
    torch.save(checkpoint, path)
    assert _predict(str(image_dir), "--model", "diverged.pt") == 1
    line = _one_error_line(capsys)
    assert "diverged.pt: the model's weights are not finite" in line and "1.classifier.5.bias" in line


def test_predict_decodes_as_the_checkpoint_records_whatever_params_yaml_says(tmp_path, capsys):
    import torch
    import yaml

    from imgpipe.params.preprocess import PreprocessParams

    path = save_checkpoint(tmp_path / "models" / "model.pt")
    checkpoint = torch.load(path, weights_only=True)
    record = {"mode": "RGB", "size": [16, 16], "resize": "letterbox", "background": [0, 0, 0], "store": "pixels"}
    checkpoint["preprocess"] = record  # what the train stage records (trainer.preprocess_record)
    torch.save(checkpoint, path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"preprocess": {"resize": "stretch"}}))
    wide = random_images(3, size=48, seed=5)[:, :20]  # 20x48: letterbox and stretch differ
    (tmp_path / "in").mkdir()
    for i, pixels in enumerate(wide):
        (tmp_path / "in" / f"w{i}.png").write_bytes(png(pixels))
    assert _predict("in", "--out", "p.csv") == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "using the model's record" in line]
    assert len(warned) == 1 and "resize 'stretch' (model: 'letterbox')" in warned[0]
    assert "store" not in warned[0]  # params' `auto` resolves to the recorded pixels: no disagreement
    got = pd.read_csv(tmp_path / "p.csv").sort_values("path")
    model, _ = load_checkpoint(path)
    cfg = PreprocessParams.model_validate(record)
    x = np.stack([to_model_pixels((tmp_path / "in" / f"w{i}.png").read_bytes(), cfg) for i in range(3)])
    expected = softmax(predict_logits(model, x, 8).numpy())
    assert list(got["label"]) == [CLASSES[i] for i in expected.argmax(1)]
    assert np.allclose(got["confidence"], expected.max(1), atol=1e-5)


def test_model_with_other_classes_one_line(image_dir, model_file, tmp_path, capsys):
    (tmp_path / "data" / "labels").mkdir(parents=True)
    (tmp_path / "data" / "labels" / "classes.json").write_text(json.dumps({"classes": ["ant", "bee", "cat"]}))
    assert _predict(str(image_dir)) == 1
    line = _one_error_line(capsys)
    assert "models/model.pt: its 3 classes do not match the 3 of data/labels/classes.json" in line
    assert "'cow'" in line and "'cat'" in line
    assert _predict(str(image_dir), "--classes", "none", "--out", "p.csv") == 0  # checked only when asked


def test_checkpoint_whose_weights_do_not_fit_its_classes_one_line(image_dir, tmp_path, capsys):
    import torch

    path = save_checkpoint(tmp_path / "odd.pt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["classes"] = ["ant", "bee"]  # the last layer still has 3 outputs
    torch.save(checkpoint, path)
    assert _predict(str(image_dir), "--model", "odd.pt") == 1
    assert "odd.pt: weights do not fit" in _one_error_line(capsys)


def test_grey_model_gets_grey_pixels(tmp_path):
    save_checkpoint(tmp_path / "models" / "model.pt", channels=1)
    (tmp_path / "one.png").write_bytes(png(random_images(1, size=40)[0]))
    assert _predict("one.png", "--out", "p.csv") == 0
    assert pd.read_csv(tmp_path / "p.csv")["error"].isna().all()


def test_a_jpeg_store_model_gets_jpeg_decoded_pixels_and_diff_reads_the_store(tmp_path):
    import torch

    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.preprocess.shards import as_stored

    path = save_checkpoint(tmp_path / "models" / "model.pt", size=72)
    checkpoint = torch.load(path, weights_only=True)
    record = {"mode": "RGB", "size": [72, 72], "resize": "stretch", "background": [255, 255, 255],
              "store": "jpeg", "jpeg_quality": 75}  # what the train stage records on a jpeg store
    checkpoint["preprocess"] = record
    torch.save(checkpoint, path)
    (tmp_path / "in").mkdir()
    images = random_images(3, size=72, seed=7)
    for i, pixels in enumerate(images):
        (tmp_path / "in" / f"p{i}.png").write_bytes(png(pixels))
    assert _predict("in", "--out", "p.csv") == 0
    got = pd.read_csv(tmp_path / "p.csv").sort_values("path")
    model, _ = load_checkpoint(path)
    cfg = PreprocessParams.model_validate(record)
    x = np.stack([to_model_pixels((tmp_path / "in" / f"p{i}.png").read_bytes(), cfg) for i in range(3)])
    stored = np.stack([as_stored(image, "jpeg", 75) for image in x])
    assert not np.array_equal(stored, x)  # the round trip is not a no-op on these images
    expected = softmax(predict_logits(model, stored, 8).numpy())
    assert np.allclose(got["confidence"], expected.max(1), atol=1e-6)
    # `imgpipe diff` reads single images of either store through a file system (DVC's at a revision).
    from types import SimpleNamespace

    from fsspec.implementations.local import LocalFileSystem

    from imgpipe.diff import read_shard_image

    from factories import write_store

    for store in ("jpeg", "pixels"):
        shard, offset, pixels = write_store(tmp_path / store, stored, store, max_bytes=20_000)
        side = SimpleNamespace(fs=LocalFileSystem(), paths=SimpleNamespace(preprocessed=tmp_path / store))
        for i in range(3):
            assert np.array_equal(read_shard_image(side, int(shard[i]), int(offset[i])), pixels[i])
