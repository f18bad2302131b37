"""Download benchmark: throughput against ``curl``, and peak memory at two archive sizes.

    python benchmarks/bench_download.py [--sizes 50 200] [--repeats 3] [--json out.json]

For each size it builds a ``.tar.gz`` of incompressible 1 MiB files, serves it from the tests'
loopback HTTP server (sendfile, so the server is not the bottleneck), and times

- ``curl -s -o FILE URL`` (the reference),
- our download (``fetch_verified``: stream to a temp file, sha256, atomic rename into the cache),
  in a fresh subprocess that then extracts the archive safely (``extract_archive``) and reports
  its peak RSS (``ru_maxrss``) and its RSS right after imports.

Throughput is the best of ``--repeats`` runs. Peak RSS must not grow with the archive size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "acquire")]

from servers import LoopbackHTTPServer  # noqa: E402

MiB = 1 << 20

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from imgpipe.download.extract import Budget, extract_archive
from imgpipe.download.fetch import fetch_verified
from imgpipe.params.download import DownloadParams

import requests, tqdm  # noqa: F401  (imported before timing: the transfer is measured, not imports)

url, work = sys.argv[1], Path(sys.argv[2])
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cfg = DownloadParams(cache_dir=work / "cache", retries=2, timeout_s=30)
t0 = time.perf_counter()
path, result, _ = fetch_verified(url, cfg)
t1 = time.perf_counter()
budget = Budget(url, cfg.max_extract_bytes, cfg.max_members)
extract_archive(path, work / "out", budget)
t2 = time.perf_counter()
print(json.dumps({"download_s": t1 - t0, "extract_s": t2 - t1, "bytes": result.size_bytes,
                  "extracted": budget.bytes, "base_rss_kib": base_rss,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_archive(path: Path, size_mb: int) -> None:
    """A tar.gz of ``size_mb`` incompressible 1 MiB members (so the archive is ~size_mb MB)."""
    import io

    with tarfile.open(path, "w:gz", compresslevel=1) as tf:
        for i in range(size_mb):
            info = tarfile.TarInfo(f"bench/class_{i % 10}/img_{i:05d}.bin")
            info.size = MiB
            tf.addfile(info, io.BytesIO(os.urandom(MiB)))


def time_curl(url: str, dest: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    elapsed = time.perf_counter() - t0
    dest.unlink()
    return elapsed


def run_ours(url: str, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, url, str(work)], check=True, capture_output=True,
                         text=True, env=env)
    shutil.rmtree(work)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200], help="archive sizes in MB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        sys.exit("curl not found")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp, LoopbackHTTPServer() as server:
        tmp = Path(tmp)
        for size_mb in args.sizes:
            archive = tmp / f"bench-{size_mb}.tar.gz"
            make_archive(archive, size_mb)
            url = server.add(f"/bench-{size_mb}.tar.gz", archive)
            nbytes = archive.stat().st_size
            curl_s = min(time_curl(url, tmp / "curl.out") for _ in range(args.repeats))
            ours = [run_ours(url, tmp / f"work-{i}") for i in range(args.repeats)]
            best = min(ours, key=lambda r: r["download_s"])
            row = {
                "archive_mb": round(nbytes / 1e6, 1),
                "curl_mb_s": round(nbytes / 1e6 / curl_s, 1),
                "ours_mb_s": round(nbytes / 1e6 / best["download_s"], 1),
                "ratio_ours_vs_curl": round(curl_s / best["download_s"], 2),
                "extract_mb_s": round(best["extracted"] / 1e6 / best["extract_s"], 1),
                "rss_after_imports_mib": round(max(r["base_rss_kib"] for r in ours) / 1024, 1),
                "peak_rss_mib": round(max(r["peak_rss_kib"] for r in ours) / 1024, 1),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            archive.unlink()
    if len(results) > 1:
        growth = results[-1]["peak_rss_mib"] - results[0]["peak_rss_mib"]
        print(f"peak RSS growth from {results[0]['archive_mb']} MB to {results[-1]['archive_mb']} MB: "
              f"{growth:+.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
