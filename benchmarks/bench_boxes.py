"""Detection labels: import + box checks per format, and the crops path against a plain PIL loop.

    nice python benchmarks/bench_boxes.py [--images 10000 --boxes 100000] [--raccoon PATH]

1. A generated set (``--images`` PNGs of 48-96 px, ``--boxes`` boxes, 3 classes, 5% planted
   duplicates) written with the project's own writers as VOC, COCO, YOLO and Label Studio JSON;
   each is imported (``box_table``: read, match to images, sizes, ids) and checked (every
   ``box_*`` check) in a fresh process: seconds and peak RSS per format.
2. Crops: ``preprocess_images`` in crop mode (one worker) against a plain PIL loop that opens each
   image, converts it, and cuts and resizes the same padded boxes: crops per second and the ratio.
   On the raccoon VOC photos when present (``../shared/data/raccoon-voc.tar.gz`` beside the checkout), else on
   the generated set.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgpipe.contracts import BOX_COLUMNS  # noqa: E402
from imgpipe.io import write_json  # noqa: E402
from imgpipe.rawdata import SourceInfo  # noqa: E402

CLASSES = ["cat", "dog", "bird"]
READ_AS = {"voc": "voc", "coco": "coco", "yolo": "yolo", "label-studio": "label-studio-json"}
RACCOON = Path(__file__).resolve().parents[2] / "shared" / "data" / "raccoon-voc.tar.gz"


def make_set(root: Path, n_images: int, n_boxes: int, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    raw = root / "raw"
    sizes = rng.integers(48, 97, (n_images, 2))
    pixels = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    items = [f"images/{i // 1000:02d}/img_{i:05d}.png" for i in range(n_images)]
    for item, (w, h) in zip(items, sizes, strict=True):
        path = raw / "files" / item
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[:h, :w]).save(path, compress_level=1)
    write_json(raw / "source.json", SourceInfo(source="bench", kind="path", layout="files").to_json())
    owner = np.sort(rng.integers(0, n_images, n_boxes))
    w, h = sizes[owner, 0].astype(float), sizes[owner, 1].astype(float)
    x0, y0 = np.round(rng.uniform(0, w * 0.7), 2), np.round(rng.uniform(0, h * 0.7), 2)
    x1 = np.round(np.minimum(w, x0 + rng.uniform(2, w * 0.5)), 2)
    y1 = np.round(np.minimum(h, y0 + rng.uniform(2, h * 0.5)), 2)
    table = pd.DataFrame({"item_id": np.asarray(items)[owner], "label": np.asarray(CLASSES)[rng.integers(0, 3, n_boxes)],
                          "xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "image_width": w.astype(int),
                          "image_height": h.astype(int), "annotator": "", "difficult": False, "truncated": False,
                          "iscrowd": False, "source_split": ""})
    dup = rng.random(n_boxes) < 0.05  # planted duplicates: a copy shifted by half a pixel
    copies = table[dup].assign(xmin=lambda d: d["xmin"] + 0.5)
    table = pd.concat([table, copies]).sort_values("item_id", kind="stable")
    table.insert(1, "box_id", table.groupby("item_id").cumcount())
    return raw, table.reset_index(drop=True).astype(BOX_COLUMNS)


def _peak_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _import_and_check(fmt: str, raw: str, where: str, queue) -> None:
    from imgpipe.labels.boxes.load import box_table
    from imgpipe.params.labels import LabelsParams
    from imgpipe.params.validate import ValidateParams
    from imgpipe.validate.checks import registered_checks
    from imgpipe.validate.checks.base import CheckContext

    base = _peak_mib()
    start = time.perf_counter()
    result, _, _ = box_table(Path(raw), Path(where), READ_AS[fmt], where, LabelsParams(task="detection"))
    imported = time.perf_counter() - start
    boxes = result.boxes
    images = sorted(set(boxes["item_id"]))
    ctx = CheckContext(rows=pd.DataFrame({"item_id": images, "source_path": images}), classes=CLASSES,
                       cfg=ValidateParams(boxes={"min_class_boxes": 0}), tables={"boxes": boxes})
    start = time.perf_counter()
    found = {c.name: len(c.run(ctx).findings) for c in registered_checks() if c.section == "boxes"}
    checked = time.perf_counter() - start
    peak = _peak_mib()
    queue.put((fmt, len(boxes), imported, checked, peak, peak - base, found))


def bench_import(tmp: Path, n_images: int, n_boxes: int) -> None:
    from imgpipe.export.boxes import BOX_WRITERS, images_of

    t = time.perf_counter()
    raw, table = make_set(tmp, n_images, n_boxes)
    print(f"generated {len(table)} boxes on {n_images} images in {time.perf_counter() - t:.1f} s")
    images = images_of(table)
    ctx = multiprocessing.get_context("spawn")
    print(f"{'format':14s} {'boxes':>7s} {'import s':>9s} {'checks s':>9s} {'boxes/s':>9s} {'peak MiB':>9s} "
          f"{'+MiB':>6s}  findings")
    for fmt, writer in BOX_WRITERS.items():
        where = tmp / f"export-{fmt}"
        t = time.perf_counter()
        writer(table, images, CLASSES, where)
        written = time.perf_counter() - t
        queue = ctx.Queue()
        proc = ctx.Process(target=_import_and_check, args=(fmt, str(raw), str(where), queue))
        proc.start()
        fmt_, n, imported, checked, peak, delta, found = queue.get()
        proc.join()
        print(f"{fmt_:14s} {n:7d} {imported:9.2f} {checked:9.2f} {n / imported:9.0f} {peak:9.0f} {delta:6.0f}  "
              f"{found} (written in {written:.1f} s)")


def plain_pil_crops(files_dir: Path, plan: dict, size: tuple[int, int], padding: float) -> int:
    """The baseline: open, convert, and cut + resize each padded box with plain PIL calls."""
    import math

    n = 0
    for item, boxes in plan.items():
        with Image.open(files_dir / item) as im:
            im = im.convert("RGB")
            width, height = im.size
            for b in boxes:
                pw, ph = padding * (b.xmax - b.xmin), padding * (b.ymax - b.ymin)
                region = (max(0, math.floor(b.xmin - pw)), max(0, math.floor(b.ymin - ph)),
                          min(width, math.ceil(b.xmax + pw)), min(height, math.ceil(b.ymax + ph)))
                if region[2] > region[0] and region[3] > region[1]:
                    np.asarray(im.crop(region).resize((size[1], size[0]), Image.Resampling.BILINEAR))
                    n += 1
    return n


def bench_crops(tmp: Path, n_images: int, n_boxes: int) -> None:
    from imgpipe.labels.boxes.load import import_detection
    from imgpipe.params.labels import LabelsParams
    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.preprocess.crops import crop_plan
    from imgpipe.preprocess.pipeline import preprocess_images

    if RACCOON.exists():
        raw = tmp / "raccoon" / "raw"
        with tarfile.open(RACCOON) as tar:
            tar.extractall(raw / "files", filter="data")
        write_json(raw / "source.json", SourceInfo(source="raccoon", kind="path", layout="files").to_json())
        what = "raccoon VOC photos"
    else:
        from imgpipe.export.boxes import write_voc

        raw, table = make_set(tmp / "crops", n_images, n_boxes)
        write_voc(table, table.drop_duplicates("item_id"), CLASSES, raw / "files" / "voc")
        what = "generated set"
    labels = tmp / "crop-labels"
    import_detection(raw, labels, LabelsParams(task="detection", detection={"crops": True}))
    plan = crop_plan(labels / "crops.parquet")
    for size in ((32, 32), (224, 224)):
        cfg = PreprocessParams(size=size, workers=1)
        t = time.perf_counter()
        summary = preprocess_images(raw, tmp / f"pre-{size[0]}", cfg, progress=False, crops=plan, crop_padding=0.1)
        ours = time.perf_counter() - t
        t = time.perf_counter()
        n = plain_pil_crops(raw / "files", plan, size, 0.1)
        base = time.perf_counter() - t
        print(f"crops ({what}, {len(plan)} images, size {size[0]}): preprocess {summary['images']} crops in "
              f"{ours:.2f} s = {summary['images'] / ours:.0f} crops/s (hashes, features and shards included); "
              f"plain PIL loop {n} crops in {base:.2f} s = {n / base:.0f} crops/s; ratio {base / ours:.2f}x")
    # A box edit: DVC reruns preprocess whole; the crop cache recuts only the moved box.
    cfg = PreprocessParams(size=(32, 32), workers=1)
    cache = str(tmp / "crop-cache")
    runs = {}
    moved = dict(plan)
    first = next(iter(moved))
    box = moved[first][0]
    moved[first] = (type(box)(box.box_id, box.xmin + 1, box.ymin, box.xmax, box.ymax, box.split), *moved[first][1:])
    for name, this in (("cold cache", plan), ("warm cache, nothing changed", plan), ("one box moved", moved)):
        t = time.perf_counter()
        preprocess_images(raw, tmp / f"pre-{len(runs)}", cfg, progress=False, crops=this, crop_padding=0.1,
                          crop_cache=cache)
        runs[name] = time.perf_counter() - t
    print("rerun after a box edit (size 32, crop cache): " + "; ".join(f"{k} {v:.2f} s" for k, v in runs.items())
          + f"; cold/one-box ratio {runs['cold cache'] / runs['one box moved']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--boxes", type=int, default=100_000)
    parser.add_argument("--only", choices=("import", "crops"), default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-boxes-") as tmp:
        if args.only in (None, "import"):
            bench_import(Path(tmp), args.images, args.boxes)
        if args.only in (None, "crops"):
            bench_crops(Path(tmp), min(args.images, 1000), min(args.boxes, 10_000))


if __name__ == "__main__":
    main()
