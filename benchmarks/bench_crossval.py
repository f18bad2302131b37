"""Label errors in the training images: the network's K-fold view (the crossval stage) against
today's probe (validate's ``label_issues``), on planted label swaps.

    nice python benchmarks/bench_crossval.py [--data ../shared/data/cifar10-train.tar.gz]
        [--folds 5 --width 16 --epochs 4]

1. The archive is unpacked into an image folder and 1% of its images (seeded) are moved into the
   folder of another class: a planted label swap, invisible to every stage. The project copy reads
   that folder (``download.source``); ``validate.test_fraction`` 0.2 holds 10,000 images as test.
2. ``dvc repro augment`` (not part of either figure; validate's own probe is switched off there,
   the bench runs it below on exactly the crossval stage's images), then ``python -m
   stages.crossval`` timed.
3. The probe (``label_issue_findings``: k-means features + ridge, 5 folds, cleanlab) on the same
   images (train + val, read with the crossval stage's reader) and the same labels, timed.
4. Recall of the swaps that landed in train + val among the first ``3 x swaps`` of each ranking.

Without the archive it falls back to the built-in digits (figures then mean little).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from _project import PROJECT as ROOT
from _project import bench_env, copy_project, set_params

sys.path.insert(0, str(ROOT))


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=bench_env(PYTHONPATH=str(cwd)))
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stderr


def plant_swaps(archive: Path, dest: Path, fraction: float, seed: int) -> set[str]:
    """Unpack ``archive`` (ImageFolder) into ``dest`` and move ``fraction`` of the images into
    another class's folder; return the moved files' paths relative to the folder's root."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    roots = [p for p in dest.iterdir() if p.is_dir()]
    root = roots[0] if len(roots) == 1 else dest
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*") if p.is_file())
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(files), int(round(fraction * len(files))), replace=False))
    moved = set()
    for i in picked:
        cls, name = files[i].split("/", 1)
        other = classes[(classes.index(cls) + int(rng.integers(1, len(classes)))) % len(classes)]
        target = f"{other}/{cls}-{name}"
        (root / files[i]).rename(root / target)
        moved.add(target)
    return moved


def recall_at(ranked_ids, swapped: set[str], budget: int) -> float:
    top = list(ranked_ids)[:budget]
    return len(swapped.intersection(top)) / max(len(swapped), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = next((p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared")
    ap.add_argument("--data", type=Path, default=shared / "data" / "cifar10-train.tar.gz")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_crossval"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_crossval_out"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--swap-fraction", type=float, default=0.01)
    ap.add_argument("--reuse", action="store_true", help="keep the workdir's reproduced project (rerun crossval only)")
    args = ap.parse_args()
    import pandas as pd

    from imgpipe import crossval as cv
    from imgpipe.contracts import COPY
    from imgpipe.params.validate import LabelIssueParams
    from imgpipe.validate.label_issues import label_issue_findings

    images_dir = args.workdir.parent / (args.workdir.name + "_images")
    project = args.workdir
    if not args.reuse:
        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(images_dir, ignore_errors=True)
        project.mkdir(parents=True)
        copy_project(project)
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        if args.data.exists():
            moved = plant_swaps(args.data, images_dir, args.swap_fraction, seed=0)
            source = str(images_dir.resolve())
            (project / "swaps.json").write_text(json.dumps(sorted(moved)))
        else:
            source = "digits"
            (project / "swaps.json").write_text("[]")
        set_params(project, {"download.source": source, "validate.test_fraction": 0.2})
        data = __import__("yaml").safe_load((project / "params.yaml").read_text())
        data["validate"]["label_issues"]["enabled"] = False  # the bench runs the probe itself, below
        (project / "params.yaml").write_text(__import__("yaml").safe_dump(data, sort_keys=False))
    t_up = 0.0
    if not args.reuse:
        t_up, _ = run([sys.executable, "-m", "dvc", "repro", "augment"], project)
    set_params(project, {"crossval.enabled": True, "crossval.folds": args.folds, "crossval.width": args.width,
                         "crossval.epochs": args.epochs})
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    cpu0 = child_cpu_s()
    t_cv, log = run([sys.executable, "-m", "stages.crossval"], project)
    cpu_cv = child_cpu_s() - cpu0
    print(log[-2500:])
    moved = set(json.loads((project / "swaps.json").read_text()))

    # the crossval stage's images and labels, through its own reader
    cwd = os.getcwd()
    os.chdir(project)
    try:
        x, y, items = cv.load_training_rows(Path("data/augmented"), include_val=True)
        classes = json.loads(Path("data/augmented/meta.json").read_text())["classes"]
        probs_table = pd.read_parquet(cv.PROBABILITIES_FILE)
        metrics = json.loads(cv.METRICS_FILE.read_text())
    finally:
        os.chdir(cwd)
    original = items[COPY].to_numpy() == 0
    x, y, items = x[original], y[original], items[original].reset_index(drop=True)
    swapped = {i for i, s in zip(items["item_id"].astype(str), items["source_path"].astype(str), strict=True)
               if any(s.endswith(m) or i.endswith(m) for m in moved)}
    n_swaps = len(swapped)
    budget = 3 * n_swaps

    # the network's ranking at exactly 3 x swaps flags (the stage's own list is capped at 3% of the images)
    probs = probs_table[[f"{cv.PROB_PREFIX}{c}" for c in classes]].to_numpy()
    order = probs_table["item_id"].astype(str).to_numpy()
    index = {i: r for r, i in enumerate(order)}
    rows = np.array([index[i] for i in items["item_id"].astype(str)])
    table, found = cv.suspects_table(items, y, probs[rows], classes, probs_table["fold"].to_numpy()[rows],
                                     budget / len(y))
    net_recall = recall_at(table["item_id"], swapped, budget)
    net_all = recall_at(cv.suspects_table(items, y, probs[rows], classes, probs_table["fold"].to_numpy()[rows],
                                          1.0)[0]["item_id"], swapped, len(y))

    t0, cpu0 = time.perf_counter(), time.process_time()
    frame = items.assign(label_index=y)
    findings, probe_acc = label_issue_findings(frame, x, classes, LabelIssueParams(max_flag_fraction=budget / len(y)),
                                               "flagged")
    t_probe, cpu_probe = time.perf_counter() - t0, time.process_time() - cpu0
    probe_recall = recall_at(findings["item_id"].astype(str), swapped, budget)

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(project / cv.PLOTS_DIR / cv.SHEET_FILE, args.out / "crossval_label_errors.png")
    figures = {
        "source": str(args.data) if moved else "digits", "images_trainval": len(y),
        "swaps_planted_total": len(moved), "swaps_in_trainval": n_swaps, "flag_budget (3 x swaps)": budget,
        "load_avg_before_crossval": load_before, "load_avg_after": Path("/proc/loadavg").read_text().split()[:3],
        "upstream_s (download..augment)": round(t_up, 1),
        "crossval": f"{args.folds} folds x width {args.width} x {args.epochs} epochs",
        "crossval_stage_s": round(t_cv, 1), "crossval_cpu_s": round(cpu_cv, 1), "crossval_oos_accuracy": metrics["oos_accuracy"],
        "crossval_recall_at_budget": round(net_recall, 4),
        "crossval_cleanlab_found": found, "crossval_recall_all_found": round(net_all, 4),
        "probe_s": round(t_probe, 1), "probe_cpu_s": round(cpu_probe, 1), "probe_oos_accuracy": round(probe_acc, 4),
        "probe_recall_at_budget": round(probe_recall, 4),
        "recall_ratio (net / probe)": round(net_recall / max(probe_recall, 1e-9), 2),
        "cost_ratio (net / probe, wall)": round(t_cv / max(t_probe, 1e-9), 2),
        "cost_ratio (net / probe, cpu)": round(cpu_cv / max(cpu_probe, 1e-9), 2),
    }
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:40s} {value}")


if __name__ == "__main__":
    main()
