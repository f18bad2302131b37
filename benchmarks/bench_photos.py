"""Full-size photographs to 224x224: preprocess images per second against a plain PIL loop.

    nice python benchmarks/bench_photos.py [--workdir DIR] [--n 2000] [--size 224] [--only a,b] [--json out.json]

Data (issue 20): ``--n`` JPEG photographs of mixed real-world sizes, from 500x375 (web) to
4000x3000 (a 12 MP camera), written once into ``<workdir>/photos`` and reused by later runs. Each
is made from the 200 real raccoon photographs of ``../shared/data/raccoon-voc.tar.gz`` (when
present; else smooth random images): two photos blended (70/30), resized (bilinear) to the target size,
plus Gaussian grain (sigma 6, a tiled 1024x1024 field) so that the file carries camera-like high-frequency detail (an upscaled
photo alone is smoother than a real one, compresses better and decodes faster, which would
flatter every decoder), saved at JPEG quality 90 with 4:2:0 chroma. Size mix: 25% 500x375, 20%
800x600, 20% 1280x960, 15% 2048x1536, 10% 3000x2250, 10% 4000x3000 (2.7 MP on average; portrait
for one in five).

Each configuration runs in a fresh subprocess (imports excluded), in the same run:

- ``pil``: the baseline: ``Image.open(p).convert("RGB").resize((224, 224), BILINEAR)`` per file,
  one process, into a list of arrays;
- ``ours-1`` / ``ours-2``: ``preprocess_images`` with ``workers`` 1 / 2 (local pool), default
  params at 224x224 (``fast_jpeg_decode: true``, ``store: auto`` = jpeg): decode, resize, pixel
  hash, perceptual hashes, statistics, JPEG encoding into shards, parquet;
- ``ours-2-fulldecode``: as ``ours-2`` with ``fast_jpeg_decode: false`` (the draft's share);
- ``dask-2``: ``engine: dask`` on a 2-worker LocalCluster started by the run (its start-up
  included, reported separately).

Reported: wall seconds and images/s, the ratio to ``pil``, and CPU seconds per image (user+sys of
the process and all its children), which the machine's other load distorts far less than wall
time. ``uptime``'s load is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (or beside the folder of worktrees holding it).
RACCOONS = next((p / "shared" / "data" / "raccoon-voc.tar.gz" for p in REPO.parents
                 if (p / "shared" / "data" / "raccoon-voc.tar.gz").exists()), REPO.parent / "shared" / "data" / "raccoon-voc.tar.gz")
SIZES = [((500, 375), 25), ((800, 600), 20), ((1280, 960), 20), ((2048, 1536), 15), ((3000, 2250), 10),
         ((4000, 3000), 10)]

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
import numpy as np, pandas, pyarrow.parquet, tqdm  # noqa: F401  (imports are not what is measured)
from PIL import Image
kind, raw, out, size = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
extra = json.loads(sys.argv[5])

def cpu():
    # This process and its reaped descendants (pool workers; Dask nannies and their workers once the
    # cluster has closed, which preprocess_images does before it returns).
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
c0 = cpu()
if kind == "pil":
    paths = sorted((raw / "files").rglob("*.jpg"))
    t0 = time.perf_counter()
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
              for p in paths]
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "images": len(arrays), "cpu_s": cpu() - c0}))
else:
    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.preprocess.pipeline import preprocess_images
    import imgpipe.preprocess.features, imgpipe.preprocess.shards  # noqa: F401
    cfg = PreprocessParams(size=(size, size), **extra)
    t0 = time.perf_counter()
    summary = preprocess_images(raw, out, cfg, progress=False)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "images": summary["images"], "engine": summary["engine"], "cpu_s": cpu() - c0}))
"""

CONFIGS = {
    "pil": {},
    "ours-1": {"workers": 1},
    "ours-2": {"workers": 2},
    "ours-2-fulldecode": {"workers": 2, "fast_jpeg_decode": False},
    "dask-2": {"engine": "dask", "dask_workers": 2},
}


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def base_photos(workdir: Path) -> tuple[list, str]:
    import numpy as np
    from PIL import Image

    if RACCOONS.exists():
        with tarfile.open(RACCOONS) as tf:
            members = sorted((m for m in tf.getmembers() if m.name.endswith(".jpg")), key=lambda m: m.name)
            photos = [Image.open(tf.extractfile(m)).convert("RGB") for m in members]
            for im in photos:
                im.load()
        return photos, f"{len(photos)} raccoon photographs ({RACCOONS.name})"
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((640, 480),
              Image.Resampling.BICUBIC) for _ in range(50)]
    return photos, "50 smooth random images (no ../shared/data/raccoon-voc.tar.gz)"


def make_photos(raw: Path, n: int) -> str:
    """``n`` photographs at ``raw/files/c<k>/<i>.jpg`` (a files layout); kept between runs."""
    import numpy as np
    from PIL import Image

    done = raw / "done.json"
    if done.exists() and json.loads(done.read_text())["n"] == n:
        return json.loads(done.read_text())["source"]
    photos, source = base_photos(raw.parent)
    rng = np.random.default_rng(20)
    grain = np.rint(rng.normal(0, 6, (1024, 1024, 3))).astype(np.int16)  # tiled: cheap
    sizes = [size for size, weight in SIZES for _ in range(weight)]
    for i in range(n):
        width, height = sizes[i % len(sizes)]
        if i % 5 == 4:
            width, height = height, width
        a, b = photos[i % len(photos)], photos[(7 * i + 3) % len(photos)]
        im = Image.blend(a.resize((width, height), Image.Resampling.BILINEAR),
                         b.resize((width, height), Image.Resampling.BILINEAR), 0.3)
        dy, dx = rng.integers(0, 1024, 2)
        tile = np.roll(grain, (dy, dx), axis=(0, 1))
        noise = np.tile(tile, (-(-height // 1024), -(-width // 1024), 1))[:height, :width]
        pixels = np.clip(np.asarray(im).astype(np.int16) + noise, 0, 255).astype(np.uint8)
        path = raw / "files" / f"c{i % 10}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    (raw / "source.json").write_text(json.dumps(
        {"source": "bench", "kind": "path", "layout": "files", "url": None, "final_url": None, "size_bytes": None,
         "sha256": None, "classes": None, "label_file": None, "extra": {}}))
    done.write_text(json.dumps({"n": n, "source": source}))
    return source


def run_child(kind: str, raw: Path, out: Path, size: int, extra: dict) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(raw), str(out), str(size), json.dumps(extra)],
                          env=env, capture_output=True, text=True)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = total
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgpipe-bench-photos"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--only", default="", help="comma-separated configurations (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    raw = args.workdir / f"raw-{args.n}"
    t0 = time.perf_counter()
    source = make_photos(raw, args.n)
    files = sorted((raw / "files").rglob("*.jpg"))
    total_bytes = sum(p.stat().st_size for p in files)
    print(f"data: {len(files)} JPEGs from {source}, {total_bytes / 2**20:.0f} MiB "
          f"({total_bytes / len(files) / 2**10:.0f} KiB each; ready in {time.perf_counter() - t0:.0f}s)")
    print(f"load before: {load()}")

    only = [name for name in args.only.split(",") if name] or list(CONFIGS)
    results = {}
    for name in only:
        r = run_child(name if name == "pil" else "ours", raw, args.workdir / f"out-{name}", args.size, CONFIGS[name])
        results[name] = r
        base = results.get("pil")
        ratio = f"{base['wall_s'] / r['wall_s']:.2f}x pil" if base else ""
        print(f"{name:>18}: {r['images']} images in {r['wall_s']:.1f}s = {r['images'] / r['wall_s']:.1f} img/s "
              f"{ratio:>10}  cpu {1000 * r['cpu_s'] / r['images']:.0f} ms/img (process incl. imports/start "
              f"{r['process_s']:.1f}s){'  ' + r['engine'] if 'engine' in r else ''}", flush=True)
    print(f"load after: {load()}")
    if args.json:
        args.json.write_text(json.dumps({"source": source, "bytes": total_bytes, "results": results,
                                         "load": load()}, indent=2))


if __name__ == "__main__":
    main()
