"""Detection labels end to end: a generated VOC set through `dvc repro` to evaluate, on crops.

The images (coloured shapes on noise, two objects each) come from the download source; the VOC
boxes live under annotations/ (labels.path), so editing a box reruns labels and the crops
(preprocess) but never downloads again.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import make_clone, ran_stages

pytestmark = pytest.mark.e2e

CLASSES = ["circle", "cross", "square"]
SIDE = 64


def _draw(img: np.ndarray, kind: int, x0: int, y0: int, size: int, rng) -> None:
    yy, xx = np.mgrid[:size, :size]
    c = size // 2
    if kind == 0:
        mask = (yy - c) ** 2 + (xx - c) ** 2 < (size // 2 - 1) ** 2
    elif kind == 1:
        mask = (np.abs(yy - c) < 3) | (np.abs(xx - c) < 3)
    else:
        mask = np.ones((size, size), dtype=bool)
    img[y0:y0 + size, x0:x0 + size][mask] = rng.integers(150, 256, 3, dtype=np.uint8)


def make_detection_set(tmp_path, images: int = 45):
    """``(archive, sha256, voc folder)``: PNGs in a tar.gz, VOC XMLs + ImageSets beside it."""
    rng = np.random.default_rng(0)
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    archive = tmp_path / "shapes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(images):
            img = rng.integers(0, 70, (SIDE, SIDE, 3), dtype=np.uint8)
            objects = []
            for slot, kind in enumerate((i + k) % 3 for k in (0, 1)):
                size = int(rng.integers(18, 26))
                x0 = int(rng.integers(0, SIDE // 2 - size // 2)) + slot * (SIDE // 2)
                y0 = int(rng.integers(0, SIDE - size))
                x0 = min(x0, SIDE - size)
                _draw(img, kind, x0, y0, size, rng)
                objects.append((CLASSES[kind], x0, y0, x0 + size, y0 + size))
            buffer = io.BytesIO()
            Image.fromarray(img).save(buffer, format="PNG")
            info = tarfile.TarInfo(f"shapes/JPEGImages/img_{i:03d}.png")
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
            xml = "".join(f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{a + 1}</xmin>"
                          f"<ymin>{b + 1}</ymin><xmax>{x}</xmax><ymax>{y}</ymax></bndbox></object>"
                          for c, a, b, x, y in objects)
            (voc / "Annotations" / f"img_{i:03d}.xml").write_text(
                f"<annotation><folder>JPEGImages</folder><filename>img_{i:03d}.png</filename><size>"
                f"<width>{SIDE}</width><height>{SIDE}</height><depth>3</depth></size>{xml}</annotation>")
            splits["test" if i % 4 == 3 else "val" if i % 8 == 1 else "train"].append(f"img_{i:03d}")
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest(), voc


def test_voc_boxes_to_crops_through_evaluate(tmp_path):
    archive, sha, voc = make_detection_set(tmp_path)
    clone = make_clone(tmp_path / "project", {
        "download.source": str(archive), "download.sha256": sha,
        "labels.task": "detection", "labels.path": "annotations/voc",
        "labels.detection": {"crops": True, "crop_padding": 0.1, "cache_dir": ".cache/crops"},
        # shapes on noise are near duplicates at 7x7; label issues (K-fold training) cost time here
        "train.epochs": 12, "validate.near_duplicates": {"enabled": False},
        "validate.label_issues": {"enabled": False},
    })
    shutil.copytree(voc, clone.root / "annotations" / "voc")
    clone.commit("detection set")
    proc = clone.dvc("repro")
    out = proc.stdout + proc.stderr
    assert "Running stage 'evaluate'" in out
    root = clone.root
    boxes = pd.read_parquet(root / "data/labels/boxes.parquet")
    assert len(boxes) == 90 and set(boxes["label"]) == set(CLASSES)
    dataset = pd.read_parquet(root / "data/validated/dataset.parquet")
    assert dataset["item_id"].str.contains("#box", regex=False).all()
    image = dataset["item_id"].str.replace(r"#box\d+$", "", regex=True)
    assert (dataset.groupby(image)["split"].nunique() == 1).all(), "crops of one image share a split"
    metrics = json.loads((root / "metrics/eval.json").read_text())
    assert metrics["test_images"] == len(dataset[dataset["split"] == "test"]) > 0
    assert metrics["accuracy"] > 0.5  # chance is 1/3

    # One box edited: labels and the crops rerun; the source is never downloaded again.
    xml = root / "annotations" / "voc" / "Annotations" / "img_000.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    proc = clone.dvc("repro", "preprocess")
    assert ran_stages(proc.stdout + proc.stderr) == ["labels"], "a flag change leaves the crops as they were"
    xml.write_text(text.replace("</xmax>", "1</xmax>", 1))  # one box wider
    proc = clone.dvc("repro", "preprocess")
    assert ran_stages(proc.stdout + proc.stderr) == ["labels", "preprocess"]
