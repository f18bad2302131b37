"""preprocess.store on full-size photographs: disk per image and speed, against a PIL loop.

Data: ``--images`` generated photo-like JPEGs (quality 90) at the sizes cameras and datasets use
(500x375, 1024x768, 2048x1536, 4000x3000 in turn), smooth content plus sensor-like noise so
their JPEG sizes resemble real photographs'. With ``--cifar`` the 10,000 CIFAR-10 JPEGs of
``../shared/data/cifar10-dev.tar.gz`` are measured too, at 32 pixels.

For each target size (32, 128, 224) and store (pixels, jpeg, png) it runs the real preprocess
(``preprocess_images``, all cores) and prints images/s, bytes per image in ``data/preprocessed``
(what DVC caches once more) and the extrapolation to ImageNet-1k's 1.28 million images. The
baseline, in the same run: a plain loop, ``PIL.Image.open`` + ``convert("RGB")`` +
``resize`` per file, one process, nothing stored.

    python benchmarks/bench_store.py --images 400
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = [(500, 375), (1024, 768), (2048, 1536), (4000, 3000)]
IMAGENET = 1_281_167


def make_photos(dest: Path, n: int) -> int:
    from PIL import Image

    rng = np.random.default_rng(0)
    total = 0
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        im = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
        im = np.clip(im + rng.normal(0, 6, im.shape), 0, 255).astype(np.uint8)
        path = dest / f"c{i % 10}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(path, format="JPEG", quality=90)
        total += path.stat().st_size
    return total


def write_raw(raw: Path, folder: Path) -> None:
    from imgpipe.io import write_json
    from imgpipe.rawdata import SourceInfo

    (raw / "files").parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, raw / "files")
    write_json(raw / "source.json", SourceInfo(source="bench", kind="path", layout="files").to_json())


def pil_loop(folder: Path, size: int) -> float:
    from PIL import Image

    files = sorted(folder.rglob("*.jpg"))
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    return len(files) / (time.perf_counter() - t0)


def ours(raw: Path, out: Path, size: int, store: str) -> tuple[float, int, int]:
    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.preprocess.pipeline import preprocess_images

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = preprocess_images(raw, out, PreprocessParams(size=(size, size), store=store), progress=False)
    wall = time.perf_counter() - t0
    stored = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return summary["images"] / wall, stored, summary["images"]


def report(label: str, folder: Path, source_bytes: int, n: int, sizes: list[int], work: Path) -> dict:
    raw = work / f"raw-{label}"
    write_raw(raw, folder)
    results = {"label": label, "images": n, "source_bytes_per_image": round(source_bytes / n)}
    print(f"\n== {label}: {n} images, source JPEGs {source_bytes / n / 1024:.1f} KiB per image")
    print(f"{'size':>5} {'store':>7} {'img/s':>8} {'x PIL':>6} {'KiB/img':>8} {'x JPEG src':>10} {'ImageNet-1k':>12}")
    for size in sizes:
        base = pil_loop(folder, size)
        print(f"{size:>5} {'PIL':>7} {base:>8.0f} {'1.0':>6} {'-':>8} {'-':>10} {'-':>12}   (baseline: open+convert+resize)")
        for store in ("pixels", "jpeg", "png"):
            rate, stored, images = ours(raw, work / "out", size, store)
            per = stored / images
            results[f"{size}/{store}"] = {"img_s": round(rate, 1), "x_pil": round(rate / base, 2),
                                          "bytes_per_image": round(per), "imagenet_gb": round(per * IMAGENET / 1e9, 1)}
            print(f"{size:>5} {store:>7} {rate:>8.0f} {rate / base:>6.2f} {per / 1024:>8.1f} "
                  f"{per / (source_bytes / n):>10.2f} {per * IMAGENET / 1e9:>10.1f} GB")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--cifar", action="store_true", help="also the 10k CIFAR-10 JPEGs at 32 pixels")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        photos = work / "photos"
        t0 = time.perf_counter()
        src = make_photos(photos, args.images)
        print(f"generated {args.images} photos in {time.perf_counter() - t0:.0f}s")
        out = [report("photos", photos, src, args.images, [32, 128, 224], work)]
        shared = REPO.parent / "shared" / "data" / "cifar10-dev.tar.gz"
        if args.cifar and shared.exists():
            import tarfile

            with tarfile.open(shared) as tf:
                tf.extractall(work / "cifar", filter="data")
            folder = work / "cifar" / "cifar10-dev"
            files = list(folder.rglob("*.jpg"))
            out.append(report("cifar10-dev", folder, sum(f.stat().st_size for f in files), len(files), [32], work))
        print(json.dumps(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
