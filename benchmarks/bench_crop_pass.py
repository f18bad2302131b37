"""The crop-invariant duplicate pass against its previous version, in one run: CPU and wall time,
the pass's own peak memory, and whether the pairs are the same bytes.

    nice python benchmarks/bench_crop_pass.py [--sizes 20000 50000] [--baseline REV]
        [--data ../shared/data/cifar10-train.tar.gz] [--profile 20000] [--out /tmp/bench_crop_pass]

``--baseline`` is a git revision whose ``imgpipe/validate/crop_duplicates.py`` is the baseline
(default ``327e9bb``: the version that kept a 32x32 thumbnail of every image). Each size runs in
two child processes, baseline then current, on the same seeded random subset of the 50,000
CIFAR-10 training photographs (generated textured images when the archive is absent). A child
loads its images first, resets its peak-RSS mark (``/proc/self/clear_refs``), runs the pass and
reports CPU seconds (``process_time``, ``--threads`` BLAS threads, default 1), wall seconds and the peak RSS above what it held before
the pass: the pass's own memory, the pixels excluded (the stage reads them from the shards).
``--profile N`` also runs cProfile on the current pass at size N and prints the top functions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _project import PROJECT as ROOT

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def images_for(n: int, data: Path, cache: Path) -> np.ndarray:
    """A seeded random subset of ``n`` images (in archive order), decoded once into ``cache``."""
    if not cache.exists():
        from bench_duplicates import load_images

        images, _, _ = load_images(data)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, images)
    everything = np.load(cache, mmap_mode="r")
    pick = np.sort(np.random.default_rng(0).choice(len(everything), min(n, len(everything)), replace=False))
    return np.ascontiguousarray(everything[pick])


def baseline_module(rev: str, out: Path):
    path = out / f"crop_duplicates_{rev}.py"
    path.write_text(subprocess.run(["git", "show", f"{rev}:imgpipe/validate/crop_duplicates.py"], cwd=ROOT,
                                   check=True, capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location(f"crop_duplicates_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one(args) -> None:
    """A child: one version at one size; prints a JSON line and writes the pairs."""
    images = images_for(args.n, args.data, args.out / "cifar.npy")
    if args.version == "current":
        from imgpipe.validate.crop_duplicates import pairs_from
    else:
        pairs_from = baseline_module(args.baseline, args.out).pairs_from
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # BLAS threads: busy-waiting ones inflate CPU time on a shared machine
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    before = _status("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        pairs = profiler.runcall(pairs_from, images, 4096)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(18)
    else:
        pairs = pairs_from(images, 4096)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pairs.to_parquet(args.out / f"pairs_{args.version}_{args.n}.parquet")
    print(json.dumps({"version": args.version, "n": args.n, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                      "pass_peak_rss_mb": round((_status("VmHWM") - before) / 2**20, 1),
                      "rss_before_mb": round(before / 2**20, 1), "pairs": len(pairs)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = next((p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared")
    ap.add_argument("--data", type=Path, default=shared / "data" / "cifar10-train.tar.gz")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000])
    ap.add_argument("--baseline", default="327e9bb")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (the stage uses 2)")
    ap.add_argument("--profile", type=int, default=0, help="also profile the current pass at this size")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_crop_pass"))
    ap.add_argument("--one", nargs=2, metavar=("VERSION", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        args.version, args.n = args.one[0], int(args.one[1])
        one(args)
        return
    import pandas as pd

    figures = {"load_avg_start": os.getloadavg(), "baseline": args.baseline, "blas_threads": args.threads}
    child = [sys.executable, __file__, "--data", str(args.data), "--baseline", args.baseline, "--out", str(args.out),
             "--threads", str(args.threads)]
    for n in args.sizes:
        runs = {}
        for version in ("baseline", "current"):
            extra = ["--profile", str(n)] if version == "current" and args.profile == n else []
            done = subprocess.run([*child, *extra, "--one", version, str(n)], check=True, capture_output=True,
                                  text=True)
            if extra:
                print(done.stderr)
            runs[version] = json.loads(done.stdout.strip().splitlines()[-1])
        old, new = (pd.read_parquet(args.out / f"pairs_{v}_{n}.parquet") for v in ("baseline", "current"))
        same = old.reset_index(drop=True).equals(new.reset_index(drop=True))
        figures[n] = {**{v: {k: r[k] for k in ("cpu_s", "wall_s", "pass_peak_rss_mb", "pairs")}
                         for v, r in runs.items()},
                      "cpu_ratio": round(runs["baseline"]["cpu_s"] / max(runs["current"]["cpu_s"], 1e-9), 2),
                      "identical_pairs": bool(same)}
        print(n, json.dumps(figures[n]), flush=True)
    figures["load_avg_end"] = os.getloadavg()
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
