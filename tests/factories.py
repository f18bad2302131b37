"""Builders of tiny, contract-shaped stage outputs (docs/DATA_CONTRACTS.md) for unit tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe.io import write_json, write_parquet
from imgpipe.preprocess.shards import shard_name


def class_images(n_per_class: int, n_classes: int, size: int = 16, channels: int = 3, seed: int = 0):
    """Images whose class is visible: class k lights up horizontal band k (plus noise)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    band = max(size // n_classes, 1)
    for k in range(n_classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
            img[k * band : (k + 1) * band] = 200 + rng.integers(0, 55, (band, size, channels), dtype=np.uint8)
            images.append(img)
            labels.append(k)
    return np.stack(images), np.asarray(labels)


def write_preprocessed(out: Path, images: np.ndarray, item_ids: list[str], splits: list[str] | None = None,
                       per_shard: int = 1000) -> pd.DataFrame:
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rows = []
    for s, start in enumerate(range(0, len(images), per_shard)):
        np.save(out / shard_name(s), images[start : start + per_shard])
        for off, img in enumerate(images[start : start + per_shard]):
            i = start + off
            grey = img.mean(-1)
            row = {
                "item_id": item_ids[i], "source_path": item_ids[i], "source_index": pd.NA,
                "source_split": (splits or [""] * len(images))[i],
                "orig_width": img.shape[1], "orig_height": img.shape[0], "orig_mode": "RGB",
                "orig_format": "PNG", "orig_bytes": 100,
                "pixel_sha256": hashlib.sha256(img.tobytes()).hexdigest(),
                "phash": f"{i:016x}", "dhash": f"{i:016x}",
                "brightness_p05": 0.0, "brightness_p50": float(np.median(grey)), "brightness_p95": 255.0,
                "entropy": 1.0, "blur": 1.0, "shard": s, "shard_offset": off,
            }
            for c in range(img.shape[-1]):
                row[f"mean_c{c}"] = float(img[..., c].mean())
                row[f"std_c{c}"] = float(img[..., c].std())
            rows.append(row)
    manifest = pd.DataFrame(rows)
    manifest["source_index"] = manifest["source_index"].astype("Int64")
    write_parquet(manifest, out / "manifest.parquet")
    write_parquet(pd.DataFrame({"item_id": pd.Series([], dtype="string"),
                                "source_path": pd.Series([], dtype="string"),
                                "reason": pd.Series([], dtype="string")}), out / "rejects.parquet")
    return manifest


def write_labels(out: Path, item_ids: list[str], labels: list[int | None], classes: list[str],
                 issues: list[dict] | None = None) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"item_id": item, "label": classes[lab], "label_index": lab, "annotators": 1, "agreement": 1.0,
         "label_source": "csv"}
        for item, lab in zip(item_ids, labels, strict=True) if lab is not None
    ]
    table = pd.DataFrame(rows)
    write_parquet(table, out / "labels.parquet")
    write_json(out / "classes.json", {"classes": classes})
    cols = ["item_id", "reference", "problem", "detail", "action"]
    write_parquet(pd.DataFrame(issues or [], columns=cols).astype("string"), out / "issues.parquet")
    return table


def write_store(out: Path, images: np.ndarray, store: str = "pixels", quality: int = 90,
                max_bytes: int = 1 << 28) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shards and ``info.json`` of a preprocessed store (``pixels``, ``jpeg`` or ``png``), written by
    the real shard writers; returns ``(shard, offset, pixels as stored)`` (JPEG-decoded for jpeg)."""
    from imgpipe.preprocess.shards import EncodedShardWriter, ShardWriter, decode_image, encode_image

    out.mkdir(parents=True, exist_ok=True)
    channels = images.shape[-1]
    if store == "pixels":
        writer = ShardWriter(out, images.shape[1:], max_bytes)
        shard, offset = writer.add(images)
        stored = images
    else:
        writer = EncodedShardWriter(out, max_bytes)
        encoded = [encode_image(image, store, quality) for image in images]
        shard, offset = writer.add(encoded)
        stored = np.stack([decode_image(data, channels) for data in encoded])
    shards = writer.close()
    write_json(out / "info.json", {"mode": "L" if channels == 1 else "RGB", "size": list(images.shape[1:3]),
                                   "channels": channels, "store": store, "shards": shards})
    return shard, offset, stored


def split_frame(item_ids: list[str], labels, splits, shard, offset) -> pd.DataFrame:
    """The columns of validate's dataset table that the augment stage reads."""
    return pd.DataFrame({"item_id": pd.Series(item_ids, dtype="string"),
                         "source_path": pd.Series(item_ids, dtype="string"),
                         "split": pd.Series(list(splits), dtype="string"),
                         "label_index": np.asarray(labels, dtype=np.int64),
                         "shard": np.asarray(shard, dtype=np.int64), "shard_offset": np.asarray(offset, dtype=np.int64)})
