"""Crops: preprocess cuts one item per box from the original image, padded, then resizes it."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from boxkit import CLASSES, IMAGES, make_raw
from PIL import Image

from imgpipe.contracts import CROPS_FILE, MANIFEST_FILE, REJECTS_FILE
from imgpipe.export.boxes import write_voc
from imgpipe.labels.boxes.load import import_detection
from imgpipe.params.labels import LabelsParams
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.preprocess.crops import CropBox, crop_plan, padded_region
from imgpipe.preprocess.pipeline import preprocess_images
from imgpipe.preprocess.shards import gather


def boxes_frame() -> pd.DataFrame:
    from test_boxes_export import random_table

    table = random_table(seed=3, per_image=2)
    # one box wholly outside its image: an empty crop, rejected with its item id
    table.loc[0, ["xmin", "ymin", "xmax", "ymax"]] = [500.0, 500.0, 600.0, 600.0]
    return table


def test_crops_are_cut_from_the_original_then_resized(tmp_path):
    raw = make_raw(tmp_path / "raw")
    table = boxes_frame()
    write_voc(table, table.drop_duplicates("item_id"), CLASSES, raw / "files" / "voc")
    labels = tmp_path / "labels"
    import_detection(raw, labels, LabelsParams(task="detection", detection={"crops": True}))
    plan = crop_plan(labels / CROPS_FILE)
    cfg = PreprocessParams(size=(8, 8), workers=1)
    out = tmp_path / "pre"
    preprocess_images(raw, out, cfg, progress=False, crops=plan, crop_padding=0.1)
    manifest = pd.read_parquet(out / MANIFEST_FILE)
    rejects = pd.read_parquet(out / REJECTS_FILE)
    assert rejects["item_id"].tolist() == ["train/a.png#box0"]
    assert rejects["reason"].iloc[0].startswith("empty_crop: box 0 (500, 500)-(600, 600)")
    assert manifest["item_id"].tolist() == ["train/a.png#box1", "train/b.png#box0", "train/b.png#box1",
                                            "val/c.png#box0", "val/c.png#box1"]
    assert set(manifest["source_split"]) == {"train", "val"}

    # the same pixels as a plain PIL crop of the padded box, resized
    row = manifest.iloc[3]
    box = table[(table["item_id"] == "val/c.png") & (table["box_id"] == 0)].iloc[0]
    region = padded_region(CropBox(0, box.xmin, box.ymin, box.xmax, box.ymax, ""), 0.1, *IMAGES["val/c.png"])
    with Image.open(io.BytesIO((raw / "files" / "val/c.png").read_bytes())) as im:
        want = np.asarray(im.convert("RGB").crop(region).resize((8, 8), Image.Resampling.BILINEAR))
    got = gather(out, np.array([row["shard"]]), np.array([row["shard_offset"]]))[0]
    assert row["orig_width"] == region[2] - region[0]
    np.testing.assert_array_equal(got, want)

    # same bytes whatever the worker count
    again = tmp_path / "again"
    preprocess_images(raw, again, PreprocessParams(size=(8, 8), workers=2), progress=False, crops=plan,
                      crop_padding=0.1)
    assert (again / MANIFEST_FILE).read_bytes() == (out / MANIFEST_FILE).read_bytes()


def test_the_crop_cache_gives_the_same_bytes_and_recuts_only_changed_boxes(tmp_path):
    from imgpipe.preprocess.crops import CropCache, decode_crops

    raw = make_raw(tmp_path / "raw")
    cfg = PreprocessParams(size=(8, 8))
    data = (raw / "files" / "val/c.png").read_bytes()
    boxes = (CropBox(0, 5, 5, 15, 45, ""), CropBox(1, 30, 10, 49, 20, ""), CropBox(2, 90, 90, 99, 99, ""))
    plain = decode_crops(data, boxes, cfg, 0.1)
    cache = CropCache(str(tmp_path / "cache"), cfg, 0.1)
    for _ in range(2):  # cold, then warm: the same originals, pixels, regions and rejects
        original, cut = cache.crops(data, boxes, cfg, 0.1)
        assert original == plain[0]
        for (_, got), (_, want) in zip(cut, plain[1], strict=True):
            if isinstance(want, Exception):
                assert str(got) == str(want)
            else:
                np.testing.assert_array_equal(got[0], want[0])
                assert got[1] == want[1]
    assert (cache.misses, cache.hits) == (2, 2)
    moved = (boxes[0], CropBox(1, 31, 10, 49, 20, ""), boxes[2])
    cache.crops(data, moved, cfg, 0.1)
    assert (cache.misses, cache.hits) == (3, 3)  # only the moved box was cut again
