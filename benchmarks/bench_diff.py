"""`imgpipe diff` between two versions of the CIFAR-10 dataset, from a fresh clone that pulls from
the remote, against DVC's own file-level `dvc diff` in the same clone.

    nice python benchmarks/bench_diff.py [--data ../shared/data/cifar10-train.tar.gz] [--changed 500]
                                          [--keep DIR]

1. A copy of the project with ``download.source`` set to the archive (the label-issue check off:
   it is not what is measured), ``dvc repro card``, committed and tagged ``dataset@v1.0.0``.
2. ``labels.path`` set to a CSV of every image's label with ``--changed`` of them moved to another
   class, ``dvc repro card`` again, tagged ``dataset@v1.1.0``; ``dvc push`` of both to a local
   remote (the default one, under a temporary HOME).
3. A fresh ``git clone``, then timed: ``imgpipe diff dataset@v1.0.0 dataset@v1.1.0 --json`` (cold:
   it fetches what it reads from the remote), the same again (warm: from the cache), and the
   baseline ``dvc diff dataset@v1.0.0 dataset@v1.1.0`` (cold as well: its own fresh clone), which
   says only which files changed. Prints the times, their ratios, and what the diff found.

Without the archive it falls back to ../shared/data/cifar10-dev.tar.gz (10,000 images).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import PROJECT, bench_env, copy_project, set_params

SHARED = PROJECT.parent.parent / "shared" / "data"
if not SHARED.exists():
    SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def sh(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "cifar10-train.tar.gz")
    parser.add_argument("--changed", type=int, default=500, help="labels changed in the second version")
    parser.add_argument("--keep", type=Path, help="build the project here and keep it (bench_export reuses it)")
    args = parser.parse_args()
    data = args.data if args.data.exists() else SHARED / "cifar10-dev.tar.gz"
    base = Path(tempfile.mkdtemp(prefix="bench-diff-"))
    home = base / "home"
    home.mkdir()
    env = bench_env(HOME=str(home))
    py, dvc = sys.executable, [sys.executable, "-m", "dvc"]
    project = args.keep or base / "project"
    project.mkdir(parents=True, exist_ok=True)
    copy_project(project)
    set_params(project, {"download.source": str(data.resolve())})
    _disable_label_issues(project)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        sh(cmd, project, env)

    t1, _ = sh([*dvc, "repro", "card"], project, env)
    sh(["git", "add", "-A"], project, env)
    sh(["git", "commit", "-qm", "v1"], project, env)
    sh(["git", "tag", "-a", "dataset@v1.0.0", "-m", "v1"], project, env)

    import pandas as pd

    labels = pd.read_parquet(project / "data/labels/labels.parquet", columns=["item_id", "label"])
    classes = sorted(set(labels["label"]))
    rng = random.Random(0)
    changed = set(rng.sample(range(len(labels)), args.changed))
    (project / "annotations").mkdir(exist_ok=True)
    with open(project / "annotations/labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "label"])
        for i, (item, label) in enumerate(zip(labels["item_id"], labels["label"], strict=True)):
            if i in changed:
                label = rng.choice([c for c in classes if c != label])
            writer.writerow([item, label])
    set_params(project, {"labels.path": "annotations/labels.csv"})
    t2, _ = sh([*dvc, "repro", "card"], project, env)
    sh(["git", "add", "-A"], project, env)
    sh(["git", "commit", "-qm", "v1.1: 500 labels changed"], project, env)
    sh(["git", "tag", "-a", "dataset@v1.1.0", "-m", "v1.1"], project, env)
    tp, _ = sh([*dvc, "push", "-q", "-T"], project, env)

    clones = []
    for name in ("fresh", "fresh-baseline"):
        clones.append(base / name)
        sh(["git", "clone", "-q", str(project), str(clones[-1])], base, env)
    diff = [py, "-m", "imgpipe.cli", "diff", "dataset@v1.0.0", "dataset@v1.1.0", "--json"]
    cold, out = sh(diff, clones[0], env)
    warm, _ = sh(diff, clones[0], env)
    baseline, _ = sh([*dvc, "diff", "dataset@v1.0.0", "dataset@v1.1.0"], clones[1], env)
    report = json.loads(out)["dataset"]
    print(f"data: {data.name}; {report['images']['a']} -> {report['images']['b']} images, "
          f"{args.changed} labels changed")
    print(f"setup (not timed below): repro v1 {t1:.1f} s, repro v1.1 {t2:.1f} s, push {tp:.1f} s")
    print(f"imgpipe diff, fresh clone (reads from the remote): {cold:.2f} s")
    print(f"imgpipe diff, again (from the cache):              {warm:.2f} s")
    print(f"dvc diff (baseline: which files changed), fresh:   {baseline:.2f} s")
    print(f"ratio imgpipe diff cold / dvc diff: {cold / baseline:.2f}x; warm / dvc diff: {warm / baseline:.2f}x")
    print(f"found: {len(report['relabelled'])} relabelled (planted {args.changed}), {len(report['added'])} added, "
          f"{len(report['removed'])} removed, {len(report['split_moves'])} split moves, "
          f"{len(report['findings']['appeared'])} findings appeared, {len(report['findings']['gone'])} gone")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


def _disable_label_issues(project: Path) -> None:
    import yaml

    path = project / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["validate"]["label_issues"]["enabled"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False))


if __name__ == "__main__":
    main()
