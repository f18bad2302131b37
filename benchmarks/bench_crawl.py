"""Crawl benchmark: images/s from a loopback server, peak memory, and the 60k-loose-files folder.

    python benchmarks/bench_crawl.py [--images 10000] [--latency-ms 20]
        [--latency-images 1000] [--loose 60000] [--skip-dask] [--json out.json]

1. A separate server process (tests/download/crawl_server.py) serves ``--images`` small generated
   PNGs on 127.0.0.1. In the same run it times
   - a sequential ``requests`` loop (one Session, ``get`` + ``.content`` per URL: the reference);
   - the download stage's crawl (``acquire`` on a CSV list: fetch, checks, resumable state,
     packs, tables) at concurrency 1, 8 and 64, each in a fresh subprocess with a fresh cache,
     reporting images/s over the whole stage and the child's peak RSS;
   - a rerun on the warm cache (nothing fetched: the resume/assembly cost);
   - the same crawl with ``engine: dask`` on a LocalCluster of 2 worker processes.
   On loopback both ends share the two cores, so this measures CPU cost per image.
2. With ``--latency-ms`` the server waits that long before each response (an internet-like round
   trip), on ``--latency-images`` images: sequential vs concurrency 8 and 64.
3. ``--loose N``: a folder of N small loose files, downloaded the old way (copy every file to
   staging, then pack) and the new way (pack straight from the folder), same output bytes; then
   the same files as a ``.tar.gz`` (extract every member, then pack; vs. straight into the packs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "download")]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from imgpipe.params.download import CrawlParams, DownloadParams
from imgpipe.download.acquire import acquire
import requests, pandas, pyarrow, tqdm  # noqa: F401  (imports are not what is measured)

listing, work, crawl = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
cfg = DownloadParams(source=listing, cache_dir=work / "cache", crawl=CrawlParams(**crawl))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
info = acquire(cfg, work / "raw")
t1 = time.perf_counter()
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": t1 - t0, "images": info.extra["summary"]["images"],
                  "failed": info.extra["summary"]["failed urls"], "base_rss_kib": base,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "children_peak_rss_kib": children}))
"""


def start_server(n: int, latency_ms: float = 0.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "download" / "crawl_server.py"), str(n),
                             str(latency_ms)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def sequential(urls: list[str]) -> float:
    import requests

    with requests.Session() as session:
        t0 = time.perf_counter()
        for url in urls:
            resp = session.get(url, timeout=30)
            resp.raise_for_status()
            _ = resp.content
        return time.perf_counter() - t0


def crawl(listing: Path, work: Path, **crawl_params) -> dict:
    params = {"allow_private": True, "per_host_rate": 0, "min_success_rate": 1.0, **crawl_params}
    params.setdefault("per_host_connections", params.get("concurrency", 16))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(listing), str(work), json.dumps(params)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_list(path: Path, urls: list[str]) -> None:
    import pandas as pd

    pd.DataFrame({"url": urls, "label": [f"c{i % 10}" for i in range(len(urls))]}).to_csv(path, index=False)


def bench_loopback(n: int, tmp: Path, skip_dask: bool) -> dict:
    proc, base = start_server(n)
    try:
        urls = [f"{base}/img/{i:06d}.png" for i in range(n)]
        listing = tmp / "list.csv"
        write_list(listing, urls)
        res: dict = {"images": n}
        seq = sequential(urls)
        res["sequential_requests"] = {"seconds": round(seq, 2), "images_per_s": round(n / seq, 1)}
        print(f"sequential requests loop: {n / seq:8.1f} images/s", flush=True)
        for conc in (1, 8, 64):
            work = tmp / f"c{conc}"
            r = crawl(listing, work, concurrency=conc)
            assert r["images"] == n and r["failed"] == 0, r
            r["images_per_s"] = round(n / r["seconds"], 1)
            res[f"crawl_concurrency_{conc}"] = r
            print(f"crawl, concurrency {conc:3d}:  {r['images_per_s']:8.1f} images/s  "
                  f"peak RSS {r['peak_rss_kib'] / 1024:.0f} MiB", flush=True)
            if conc == 64:
                warm = crawl(listing, work, concurrency=conc)
                res["warm_rerun"] = warm
                print(f"rerun on the warm cache (nothing fetched): {warm['seconds']:.2f} s", flush=True)
            shutil.rmtree(work)
        if not skip_dask:
            work = tmp / "dask"
            r = crawl(listing, work, concurrency=32, engine="dask", dask_workers=2, shard_size=max(1, n // 8))
            assert r["images"] == n, r
            r["images_per_s"] = round(n / r["seconds"], 1)
            res["crawl_dask_2_workers"] = r
            print(f"crawl, dask 2 workers x 32: {r['images_per_s']:6.1f} images/s (incl. cluster start) "
                  f"driver peak RSS {r['peak_rss_kib'] / 1024:.0f} MiB", flush=True)
            shutil.rmtree(work)
        return res
    finally:
        proc.terminate()
        proc.wait()


def bench_latency(n: int, latency_ms: float, tmp: Path) -> dict:
    proc, base = start_server(n, latency_ms)
    try:
        urls = [f"{base}/img/{i:06d}.png" for i in range(n)]
        listing = tmp / "lat.csv"
        write_list(listing, urls)
        seq = sequential(urls)
        res: dict = {"images": n, "latency_ms": latency_ms,
                     "sequential_requests": {"seconds": round(seq, 2), "images_per_s": round(n / seq, 1)}}
        print(f"[{latency_ms:g} ms latency] sequential requests loop: {n / seq:7.1f} images/s", flush=True)
        for conc in (8, 64):
            r = crawl(listing, tmp / f"lat{conc}", concurrency=conc)
            r["images_per_s"] = round(n / r["seconds"], 1)
            res[f"crawl_concurrency_{conc}"] = r
            print(f"[{latency_ms:g} ms latency] crawl, concurrency {conc:3d}: {r['images_per_s']:7.1f} images/s",
                  flush=True)
            shutil.rmtree(tmp / f"lat{conc}")
        return res
    finally:
        proc.terminate()
        proc.wait()


def bench_loose(n: int, tmp: Path) -> dict:
    """N small loose files (1-3 KiB, like CIFAR JPEGs) in 10 class folders: old vs new download."""
    import random

    from imgpipe.download.acquire import acquire
    from imgpipe.download.extract import Budget, copy_tree, single_top_folder
    from imgpipe.params.download import DownloadParams
    from imgpipe.rawdata import FILES_DIR, pack_images

    src = tmp / "loose" / "dataset"
    rng = random.Random(0)
    for c in range(10):
        (src / f"class{c}").mkdir(parents=True)
    for i in range(n):
        (src / f"class{i % 10}" / f"{i:06d}.jpg").write_bytes(rng.randbytes(rng.randint(1024, 3072)))

    def old(raw: Path) -> None:
        raw.mkdir()
        staging = raw / ".staging"
        copy_tree(src.parent, staging, Budget("loose", 1 << 40, 10**7))
        top = single_top_folder(staging)
        (staging / top if top else staging).rename(raw / FILES_DIR)
        pack_images(raw)

    t0 = time.perf_counter()
    old(tmp / "old")
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    acquire(DownloadParams(source=str(src.parent), cache_dir=tmp / "cache"), tmp / "new")
    t_new = time.perf_counter() - t0
    same = all((tmp / "old" / rel).read_bytes() == (tmp / "new" / rel).read_bytes()
               for rel in ("packed/images-00000.tar", "packed/index.parquet"))
    print(f"{n} loose files: copy-then-pack {t_old:.1f} s, packed straight from the folder {t_new:.1f} s "
          f"(same pack bytes: {same})", flush=True)
    res = {"files": n, "copy_then_pack_s": round(t_old, 2), "pack_from_source_s": round(t_new, 2),
           "same_bytes": same}

    # The same files as a .tar.gz: extract every member to staging then pack, vs. straight to packs.
    import tarfile

    from imgpipe.download.extract import extract_archive

    archive = tmp / "loose.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(src, arcname="dataset")
    shutil.rmtree(tmp / "old")
    shutil.rmtree(tmp / "new")
    t0 = time.perf_counter()
    raw = tmp / "old"
    staging = raw / ".staging"
    extract_archive(archive, staging, Budget("loose", 1 << 40, 10**7))
    top = single_top_folder(staging)
    (staging / top if top else staging).rename(raw / FILES_DIR)
    pack_images(raw)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    acquire(DownloadParams(source=str(archive), cache_dir=tmp / "cache"), tmp / "new")
    t_new = time.perf_counter() - t0
    same = all((tmp / "old" / rel).read_bytes() == (tmp / "new" / rel).read_bytes()
               for rel in ("packed/images-00000.tar", "packed/index.parquet"))
    print(f"{n} files in a .tar.gz: extract-then-pack {t_old:.1f} s, packed straight from the archive "
          f"{t_new:.1f} s (same pack bytes: {same})", flush=True)
    res.update(archive_extract_then_pack_s=round(t_old, 2), archive_pack_from_source_s=round(t_new, 2),
               archive_same_bytes=same)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--latency-images", type=int, default=1000)
    ap.add_argument("--loose", type=int, default=60_000)
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), cores: {os.cpu_count()}", flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        tmp = Path(tmp)
        if args.images:
            results["loopback"] = bench_loopback(args.images, tmp, args.skip_dask)
        if args.latency_ms and args.latency_images:
            results["latency"] = bench_latency(args.latency_images, args.latency_ms, tmp)
        if args.loose:
            results["loose_folder"] = bench_loose(args.loose, tmp)
    results["load_after"] = os.getloadavg()[0]
    results["bench_peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"load after: {results['load_after']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
