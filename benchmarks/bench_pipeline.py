"""Benchmark the default pipeline end to end on 2 cores (issue: the pipeline backbone).

Makes a fresh git clone of the working tree in a temporary folder and, with the real params:
- runs every stage through `dvc repro -s <stage>` in order, timing each, then the total;
- times a no-op `dvc repro` and a no-op `dvc status` (best of 3);
- as the baseline, runs the same seven stage scripts directly (`python -m stages.<name>`,
  no DVC) in a second clone, so the ratio shows what DVC's bookkeeping costs;
- prints the test accuracy from metrics/eval.json.

Usage: python benchmarks/bench_pipeline.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import bench_env, copy_project

STAGES = ["download", "labels", "preprocess", "validate", "card", "augment", "train", "evaluate"]


def sh(cwd: Path, *args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=bench_env(), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - started


def clone(dest: Path) -> Path:
    copy_project(dest)
    sh(dest, "git", "init", "-q", "-b", "main")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "bench")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary clones")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    dvc = [sys.executable, "-m", "dvc"]
    try:
        project = clone(root / "dvc")
        times = {s: sh(project, *dvc, "repro", "-s", s) for s in STAGES}
        total = sum(times.values())
        noop_repro = min(sh(project, *dvc, "repro") for _ in range(3))
        noop_status = min(sh(project, *dvc, "status") for _ in range(3))
        accuracy = json.loads((project / "metrics" / "eval.json").read_text())

        base = clone(root / "plain")
        base_times = {s: sh(base, sys.executable, "-m", f"stages.{s}") for s in STAGES}
        base_total = sum(base_times.values())

        print(f"{'stage':<12}{'dvc repro -s (s)':>18}{'python -m (s)':>16}")
        for s in STAGES:
            print(f"{s:<12}{times[s]:>18.1f}{base_times[s]:>16.1f}")
        print(f"{'total':<12}{total:>18.1f}{base_total:>16.1f}   ratio dvc/plain = {total / base_total:.2f}")
        print(f"no-op dvc repro : {noop_repro:.2f} s (budget 2 s)")
        print(f"no-op dvc status: {noop_status:.2f} s")
        print(f"test metrics    : {json.dumps(accuracy, sort_keys=True)}")
        print(f"budget: full repro {total:.0f} s of 180 s; accuracy {accuracy['accuracy']:.4f} (target >= 0.95)")
    finally:
        if args.keep:
            print(f"clones kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
