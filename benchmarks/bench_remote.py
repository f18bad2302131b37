"""Benchmark sharing through a remote at full scale (issue: versions across machines).

With the 50,000 CIFAR-10 training images of ../shared/data/cifar10-train.tar.gz (or --archive):
- runs the pipeline in a fresh clone (download + preprocess, then the rest with 1 epoch and no
  augmented copies unless --through preprocess), timing each stage;
- pushes to a loopback S3 server (moto, 127.0.0.1) and pulls into a fresh git clone, timing both
  and counting the objects stored: first only the images as the pipeline stores them
  (`dvc push download`: a few tar packs + an index), then everything;
- as the baseline, in the same run, the same images as one file per image (a DVC-tracked folder
  of 50,000 JPEGs, `dvc add images`), pushed to and pulled from the same server;
- times `dvc pull models/model.pt` (and `dvc artifacts get <repo> model --rev v1.0.0`) against
  pulling everything.

Prints absolute figures and ratios. Run under the CPU lock: it takes minutes.

Usage: python benchmarks/bench_remote.py [--archive PATH] [--through preprocess|evaluate] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _project import PROJECT, bench_env, copy_project, set_params

sys.path.insert(0, str(PROJECT / "tests" / "sources"))
from servers import MotoS3Server  # noqa: E402

DEFAULT_ARCHIVE = PROJECT.parent / "shared" / "data" / "cifar10-train.tar.gz"
DVC = [sys.executable, "-m", "dvc"]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Runner:
    def __init__(self, home: Path) -> None:
        self.env = bench_env(HOME=str(home), **CREDS)

    def run(self, cwd: Path, *args: str) -> tuple[float, str]:
        started = time.perf_counter()
        proc = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{' '.join(args)} failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return time.perf_counter() - started, proc.stdout + proc.stderr

    def dvc(self, cwd: Path, *args: str) -> tuple[float, str]:
        return self.run(cwd, *DVC, *args)


def commit(r: Runner, root: Path, message: str) -> None:
    r.run(root, "git", "add", "-A")
    r.run(root, "git", "commit", "-qm", message)


def use_s3(r: Runner, root: Path, bucket: str, endpoint: str) -> None:
    # The README's switch: one `dvc remote add -d`, plus the endpoint for an S3-compatible server.
    r.dvc(root, "remote", "add", "-d", "-f", "s3", f"s3://{bucket}/imgpipe")
    r.dvc(root, "remote", "modify", "s3", "endpointurl", endpoint)


def count_objects(client, bucket: str) -> tuple[int, int]:
    n = size = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            n += 1
            size += obj["Size"]
    return n, size


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--through", choices=["preprocess", "evaluate"], default="evaluate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    if not args.archive.exists():
        sys.exit(f"{args.archive}: not found (pass --archive)")
    archive = args.archive.resolve()
    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    (root / "home").mkdir()
    r = Runner(root / "home")
    load = os.getloadavg()
    try:
        with MotoS3Server() as moto:
            client = moto.client()
            for bucket in ("packed", "loose"):
                client.create_bucket(Bucket=bucket)

            # -- the pipeline's own layout ------------------------------------------------------------
            project = copy_project(root / "project")
            r.run(project, "git", "init", "-q", "-b", "main")
            set_params(project, {"download.source": str(archive), "download.sha256": sha256_file(archive),
                                 "train.epochs": 1, "augment.copies": 0})
            use_s3(r, project, "packed", moto.endpoint_url)
            commit(r, project, "cifar10-train through S3")
            stage_times = {}
            stages = ["download", "labels", "preprocess"]  # preprocess reads the labels' crops table
            if args.through == "evaluate":
                stages += ["validate", "card", "augment", "train", "evaluate"]
            for stage in stages:
                stage_times[stage], _ = r.dvc(project, "repro", "-s", stage)
            commit(r, project, "outputs")
            if args.through == "evaluate":
                r.run(project, "git", "tag", "-a", "model@v1.0.0", "-m", "bench")
            raw_files, raw_bytes = tree_bytes(project / "data" / "raw")

            t_push_raw, _ = r.dvc(project, "push", "download")
            objs_raw, size_raw = count_objects(client, "packed")
            t_push_all, _ = r.dvc(project, "push")
            objs_all, size_all = count_objects(client, "packed")

            pulled = root / "pulled"
            r.run(root, "git", "clone", "-q", str(project), str(pulled))
            t_pull_raw, _ = r.dvc(pulled, "pull", "download")
            t_model = t_art = None
            if args.through == "evaluate":
                model_only = root / "model-only"
                r.run(root, "git", "clone", "-q", str(project), str(model_only))
                t_model, _ = r.dvc(model_only, "pull", "models/model.pt")
                t_art, _ = r.dvc(root, "artifacts", "get", str(project), "model", "--rev", "v1.0.0",
                                 "-o", str(root / "art.pt"))
            everything = root / "everything"
            r.run(root, "git", "clone", "-q", str(project), str(everything))
            t_pull_all, _ = r.dvc(everything, "pull")

            # -- baseline: one file per image ----------------------------------------------------------
            loose = root / "loose"
            loose.mkdir()
            r.run(loose, "git", "init", "-q", "-b", "main")
            r.dvc(loose, "init", "-q")
            r.dvc(loose, "config", "core.analytics", "false")
            started = time.perf_counter()
            with tarfile.open(archive) as tar:
                tar.extractall(loose / "images", filter="data")
            t_extract = time.perf_counter() - started
            loose_files, loose_bytes = tree_bytes(loose / "images")
            t_add, _ = r.dvc(loose, "add", "images")
            use_s3(r, loose, "loose", moto.endpoint_url)
            commit(r, loose, "images, one file each")
            t_push_loose, _ = r.dvc(loose, "push")
            objs_loose, size_loose = count_objects(client, "loose")
            loose_pulled = root / "loose-pulled"
            r.run(root, "git", "clone", "-q", str(loose), str(loose_pulled))
            t_pull_loose, _ = r.dvc(loose_pulled, "pull")

        print(f"images: {loose_files} files, {loose_bytes / 1e6:.1f} MB as loose JPEGs; "
              f"data/raw as packed: {raw_files} files, {raw_bytes / 1e6:.1f} MB")
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; at end: "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        print("pipeline stages (dvc repro -s):", ", ".join(f"{s} {t:.1f} s" for s, t in stage_times.items()))
        print()
        print(f"{'the same images':<34}{'push (s)':>10}{'pull (s)':>10}{'objects':>10}{'MB stored':>11}")
        print(f"{'packed (data/raw: tars + index)':<34}{t_push_raw:>10.1f}{t_pull_raw:>10.1f}{objs_raw:>10}{size_raw / 1e6:>11.1f}")
        print(f"{'one file per image (dvc add)':<34}{t_push_loose:>10.1f}{t_pull_loose:>10.1f}{objs_loose:>10}{size_loose / 1e6:>11.1f}")
        print(f"{'ratio loose / packed':<34}{t_push_loose / t_push_raw:>10.1f}{t_pull_loose / t_pull_raw:>10.1f}"
              f"{objs_loose / max(objs_raw, 1):>10.0f}")
        print(f"(baseline setup, not in the ratio: tar extract {t_extract:.1f} s, dvc add {t_add:.1f} s)")
        print()
        print(f"whole project: push {t_push_raw + t_push_all:.1f} s, {objs_all} objects, {size_all / 1e6:.1f} MB; "
              f"pull into a fresh clone {t_pull_all:.1f} s")
        if t_model is not None:
            print(f"dvc pull models/model.pt: {t_model:.1f} s; dvc artifacts get <repo> model --rev v1.0.0: {t_art:.1f} s; "
                  f"dvc pull (everything): {t_pull_all:.1f} s; ratio everything / model only = {t_pull_all / t_model:.1f}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
