"""A tiny reproduced project for export tests: raw packs (or an array source), labels, validated
dataset, built from generated images with the contracts' own writers (no dvc, no GX)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from imgpipe.export import ProjectOutputs
from imgpipe.io import write_json, write_parquet
from imgpipe.rawdata import FILES_DIR, SOURCE_FILE, SourceInfo, pack_images

from factories import class_images, write_labels, write_preprocessed

CLASSES = ["cat", "dog", "zebra"]
SPLIT_CYCLE = ["train", "train", "val", "test"]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def build_project(root: Path, per_class: int = 4, layout: str = "files", classes=CLASSES,
                  seed: int = 0) -> ProjectOutputs:
    """``per_class`` images per class, split train/train/val/test in turn; returns its outputs."""
    images, labels = class_images(per_class, len(classes), size=12, seed=seed)
    if layout == "files":
        item_ids = [f"{classes[k]}/img.{i:03d}.png" for i, k in enumerate(labels)]
        files = root / "data/raw" / FILES_DIR
        for item_id, pixels in zip(item_ids, images, strict=True):
            (files / item_id).parent.mkdir(parents=True, exist_ok=True)
            (files / item_id).write_bytes(png(pixels))
        pack_images(root / "data/raw")
    else:
        item_ids = [f"batch#{i}" for i in range(len(images))]
    write_json(root / "data/raw" / SOURCE_FILE, SourceInfo(source="test", kind="path", layout=layout).to_json())
    manifest = write_preprocessed(root / "data/preprocessed", images, item_ids)
    table = write_labels(root / "data/labels", item_ids, [int(k) for k in labels], list(classes))
    dataset = manifest.merge(table, on="item_id")
    dataset["split"] = [SPLIT_CYCLE[i % len(SPLIT_CYCLE)] for i in range(len(dataset))]
    (root / "data/validated").mkdir(parents=True)
    write_parquet(dataset, root / "data/validated/dataset.parquet")
    return ProjectOutputs(root)
