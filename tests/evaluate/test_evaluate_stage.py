"""The evaluate stage on a small generated test split: every output, valid PNGs of the stated size,
byte-identical reruns, flip TTA, and one clear line for an empty test split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from evalkit import CLASSES, SIZE, random_images, save_checkpoint
from PIL import Image

from imgpipe.evaluate import plots
from imgpipe.io import write_parquet

N = 40
OUTPUTS = ["metrics/eval.json", "metrics/eval/per_class.csv", "metrics/eval/predictions.csv",
           "metrics/eval/reliability.csv", "metrics/eval/label_errors.csv", *(f"metrics/eval/plots/{f}" for f in sorted(plots.FILES.values()))]


def _project(root, n: int = N, evaluate: dict | None = None, store: str = "pixels", size: int = SIZE):
    """A preprocessed store (``store``) of ``n`` test images, augment's test index into it, a model."""
    from imgpipe.augment import index_rows

    from factories import split_frame, write_store

    aug = root / "data" / "augmented"
    aug.mkdir(parents=True)
    x = random_images(n, size=size, seed=1)
    y = np.arange(n, dtype=np.int64) % len(CLASSES)
    shard, offset, _ = write_store(root / "data" / "preprocessed", x, store)
    ids = [f"photos/img{i:03d}.png" for i in range(n)]
    write_parquet(index_rows(split_frame(ids, y, ["test"] * n, shard, offset), 0), aug / "test_items.parquet")
    save_checkpoint(root / "models" / "model.pt", size=size)
    (root / "params.yaml").write_text(yaml.safe_dump({"evaluate": evaluate or {}}))


def _run(root, monkeypatch):
    from stages.evaluate import main

    monkeypatch.chdir(root)
    main()


def test_outputs_plots_and_determinism(tmp_path, monkeypatch, capsys):
    # A JPEG store (what preprocess.store auto keeps above 64x64), decoded in the stage's process.
    _project(tmp_path, store="jpeg", evaluate={"decode_workers": 0, "batch_size": 16})
    _run(tmp_path, monkeypatch)
    assert "evaluate: done in" in capsys.readouterr().err
    headline = json.loads((tmp_path / "metrics/eval.json").read_text())
    assert set(headline) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                             "recall_weighted", "f1_weighted", "ece", "test_images",
                             "suspected_label_errors"}  # no top-5 for 3 classes
    assert headline["test_images"] == N
    per_class = pd.read_csv(tmp_path / "metrics/eval/per_class.csv")
    assert per_class.columns.tolist() == ["class", "precision", "recall", "f1", "support"]
    assert per_class["class"].tolist() == CLASSES and per_class["support"].sum() == N
    rows = pd.read_csv(tmp_path / "metrics/eval/predictions.csv")
    assert rows.columns.tolist() == ["item_id", "source_path", "actual", "predicted", "confidence"]
    assert (rows["actual"] == rows["predicted"]).mean() == pytest.approx(headline["accuracy"])
    reliability = pd.read_csv(tmp_path / "metrics/eval/reliability.csv")
    assert reliability["count"].sum() == N and (reliability["count"] > 0).all()
    for name, (width, height) in plots.SIZES.items():
        path = tmp_path / "metrics/eval/plots" / plots.FILES[name]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.size == (width, height), name
    first = {p: (tmp_path / p).read_bytes() for p in OUTPUTS}
    # Again with two DataLoader decode workers: the same bytes.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"decode_workers": 2, "batch_size": 16}}))
    _run(tmp_path, monkeypatch)
    assert {p: (tmp_path / p).read_bytes() for p in OUTPUTS} == first


def test_flip_tta_changes_the_probabilities(tmp_path, monkeypatch):
    _project(tmp_path / "plain")
    _project(tmp_path / "tta", evaluate={"tta": True})
    _run(tmp_path / "plain", monkeypatch)
    _run(tmp_path / "tta", monkeypatch)
    plain = pd.read_csv(tmp_path / "plain/metrics/eval/predictions.csv")["confidence"]
    tta = pd.read_csv(tmp_path / "tta/metrics/eval/predictions.csv")["confidence"]
    assert not np.allclose(plain, tta)
    # TTA is the mean of the logits of each image and its mirror image (left-right), nothing else.
    import torch

    from imgpipe.evaluate.metrics import softmax
    from imgpipe.inference import load_checkpoint, predict_logits

    model, _ = load_checkpoint(tmp_path / "tta/models/model.pt")
    from imgpipe.storedsplit import load_split

    x = np.asarray(load_split(tmp_path / "tta/data/augmented", "test", tmp_path / "tta/data/preprocessed").x)
    mean_logits = (predict_logits(model, x, 8) + predict_logits(model, x[:, :, ::-1].copy(), 8)) / 2
    assert np.allclose(tta, softmax(mean_logits.numpy()).max(1), atol=1e-5)
    assert torch.equal(predict_logits(model, x, 8, tta=True), mean_logits)


def test_gallery_shows_the_most_confidently_wrong():
    from imgpipe.evaluate.gallery import captions, most_confidently_wrong

    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    actual = np.array([0, 0, 0, 0, 1])
    rows = most_confidently_wrong(actual, probs, 3)
    assert rows.tolist() == [3, 1, 4]
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(5)]})
    assert captions(rows[:1], items, actual, probs, ["cat", "dog"]) == ["i3\ntrue: cat\npred: dog (0.95)"]


def test_plots_hold_their_size_with_many_classes(tmp_path):
    classes = [f"class_{i:03d}" for i in range(100)]
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, (100, 100))
    plots.confusion_png(cm, classes, tmp_path / "c.png", normalized=True)
    table = pd.DataFrame({"class": classes, "precision": rng.random(100), "recall": rng.random(100),
                          "f1": rng.random(100), "support": rng.integers(1, 9, 100)})
    plots.per_class_png(table, tmp_path / "p.png")
    plots.gallery_png([], [], tmp_path / "g.png", "nothing wrong")
    for name, file in (("confusion_normalized", "c.png"), ("per_class", "p.png"), ("gallery", "g.png")):
        with Image.open(tmp_path / file) as im:
            assert im.size == plots.SIZES[name]


def test_empty_test_split_is_one_line(tmp_path, monkeypatch, capsys):
    _project(tmp_path, n=0)
    with pytest.raises(SystemExit) as exc:
        _run(tmp_path, monkeypatch)
    assert exc.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("evaluate failed: data/augmented/test_items.parquet: the test split is empty")

