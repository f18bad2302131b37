"""Label errors in the training images: the network's K-fold view (the crossval stage) against
today's probe (validate's ``label_issues``), on planted label swaps.

    nice python benchmarks/bench_crossval.py [--data ../shared/data/cifar10-train.tar.gz]
        [--folds 5 --width 16 --epochs 4]
    python benchmarks/bench_crossval.py --probabilities /tmp/bench_crossval/metrics/crossval/probabilities.parquet

1. The archive is unpacked into an image folder and 1% of its images (seeded) are moved into the
   folder of another class (``_project.plant_swaps``): a planted label swap, invisible to every
   stage. The project copy reads that folder (``download.source``); ``validate.test_fraction``
   0.2 holds 10,000 images as test.
2. ``dvc repro augment`` (not part of either figure; validate's own probe is switched off there,
   the bench runs it below on exactly the crossval stage's images), then ``python -m
   stages.crossval`` timed.
3. The probe (``label_issue_findings``: k-means features + ridge, 5 folds, cleanlab) on the same
   images (train + val, read with the crossval stage's reader) and the same labels, timed.
4. Recall of the swaps that landed in train + val among the first ``3 x swaps`` of each ranking:
   the probe's, and the network's under every ``crossval.rank_by`` (scored with the stage's own
   ``rank_suspects`` on its ``probabilities.parquet``), plus recall of the list the stage writes
   at its shipped cap (``crossval.max_flag_fraction``).

``--probabilities PATH`` re-scores a finished run instead (seconds, no training): the rankings do
not change the probabilities, so every ``rank_by`` is scored on the same ones. ``--swaps`` is that
run's ``swaps.json`` (default: the one in the project that holds PATH).

Without the archive it falls back to the built-in digits (figures then mean little).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from _project import PROJECT as ROOT
from _project import fresh_project, plant_swaps, run, set_params, shared_data

sys.path.insert(0, str(ROOT))


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def recall_at(ranked_ids, swapped: set[str], budget: int) -> float:
    top = list(ranked_ids)[:budget]
    return len(swapped.intersection(top)) / max(len(swapped), 1)


def swapped_ids(items, moved: set[str]) -> set[str]:
    """The item ids of ``items`` that are planted swaps (``moved``: ``<class>/<file>`` paths)."""
    def tail(path: str) -> str:
        return "/".join(Path(path).parts[-2:])

    return {i for i, s in zip(items["item_id"].astype(str), items["source_path"].astype(str), strict=True)
            if tail(s) in moved or tail(i) in moved}


def read_probabilities(path: Path):
    """``(items, labels, probs, folds, classes)`` from the crossval stage's ``probabilities.parquet``."""
    import pandas as pd

    from imgpipe import crossval as cv

    table = pd.read_parquet(path)
    columns = [c for c in table.columns if c.startswith(cv.PROB_PREFIX)]
    classes = [c[len(cv.PROB_PREFIX):] for c in columns]
    labels = np.array([classes.index(name) for name in table["label"].astype(str)], dtype=np.int64)
    return (table[["item_id", "source_path", "split"]], labels, table[columns].to_numpy(np.float32),
            table["fold"].to_numpy(np.int64), classes)


def score_rankings(items, labels, probs, folds, classes, swapped: set[str]) -> dict:
    """Recall of ``swapped`` among the first 3 x swaps of every ``crossval.rank_by``, and of the
    list the stage writes at its shipped cap, all through the stage's own code."""
    from imgpipe import crossval as cv
    from imgpipe.params.crossval import CrossvalParams

    shipped = CrossvalParams()
    budget = 3 * len(swapped)
    ids = items["item_id"].astype(str).to_numpy()
    out = {"images": len(labels), "swaps": len(swapped), "flag_budget (3 x swaps)": budget,
           "oos_accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
           "shipped": f"rank_by {shipped.rank_by}, max_flag_fraction {shipped.max_flag_fraction:g}"}
    for rank_by in cv.RANK_BY:
        started = time.perf_counter()
        ranked = cv.rank_suspects(labels, probs, rank_by)
        out[f"{rank_by}: candidates"] = len(ranked)
        out[f"{rank_by}: recall_at_budget"] = round(recall_at(ids[ranked], swapped, budget), 4)
        out[f"{rank_by}: recall_all_candidates"] = round(recall_at(ids[ranked], swapped, len(ranked)), 4)
        table, _ = cv.suspects_table(items, labels, probs, classes, folds, shipped.max_flag_fraction, rank_by)
        out[f"{rank_by}: stage_list (shipped cap)"] = len(table)
        out[f"{rank_by}: stage_list_recall"] = round(recall_at(table["item_id"], swapped, len(table)), 4)
        out[f"{rank_by}: seconds"] = round(time.perf_counter() - started, 2)
    return out


def print_figures(figures: dict, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:44s} {value}")


def rescore(path: Path, swaps: Path | None, out: Path) -> None:
    swaps = swaps or next((p / "swaps.json" for p in path.resolve().parents if (p / "swaps.json").is_file()), None)
    if swaps is None:
        sys.exit(f"{path}: no swaps.json in the project that holds it; pass --swaps")
    items, labels, probs, folds, classes = read_probabilities(path)
    swapped = swapped_ids(items, set(json.loads(swaps.read_text())))
    figures = {"probabilities": str(path), "swaps_file": str(swaps),
               "load_avg": Path("/proc/loadavg").read_text().split()[:3],
               **score_rankings(items, labels, probs, folds, classes, swapped)}
    print_figures(figures, out, "figures_rescore.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data("cifar10-train.tar.gz"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_crossval"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_crossval_out"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--swap-fraction", type=float, default=0.01)
    ap.add_argument("--reuse", action="store_true", help="keep the workdir's reproduced project (rerun crossval only)")
    ap.add_argument("--probabilities", type=Path, default=None, metavar="PATH",
                    help="re-score a finished run's probabilities.parquet (no training)")
    ap.add_argument("--swaps", type=Path, default=None, help="with --probabilities: that run's swaps.json")
    args = ap.parse_args()
    if args.probabilities is not None:
        rescore(args.probabilities, args.swaps, args.out)
        return
    from imgpipe import crossval as cv
    from imgpipe.contracts import COPY
    from imgpipe.params.validate import LabelIssueParams
    from imgpipe.validate.label_issues import label_issue_findings

    images_dir = args.workdir.parent / (args.workdir.name + "_images")
    project = args.workdir
    if not args.reuse:
        shutil.rmtree(images_dir, ignore_errors=True)
        fresh_project(project)
        if args.data.exists():
            moved = plant_swaps(args.data, images_dir, args.swap_fraction, seed=0)
            source = str(images_dir.resolve())
            (project / "swaps.json").write_text(json.dumps(sorted(moved)))
        else:
            source = "digits"
            (project / "swaps.json").write_text("[]")
        set_params(project, {"download.source": source, "validate.test_fraction": 0.2})
        data = yaml.safe_load((project / "params.yaml").read_text())
        data["validate"]["label_issues"]["enabled"] = False  # the bench runs the probe itself, below
        (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
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

    # the stage's probabilities, scored under every ranking
    items, labels, probs, folds, classes = read_probabilities(project / cv.PROBABILITIES_FILE)
    swapped = swapped_ids(items, moved)
    scores = score_rankings(items, labels, probs, folds, classes, swapped)
    budget = scores["flag_budget (3 x swaps)"]

    # the probe on the same images (read through the stage's reader) and labels
    cwd = os.getcwd()
    os.chdir(project)
    try:
        x, y, rows_items = cv.load_training_rows(Path("data/augmented"), include_val=True)
        original = np.flatnonzero(rows_items[COPY].to_numpy() == 0)
        pixels = np.asarray(cv.take_rows(x, original))  # the probe's features want the pixels in memory
        metrics = json.loads(cv.METRICS_FILE.read_text())
    finally:
        os.chdir(cwd)
    frame = rows_items.iloc[original].reset_index(drop=True).assign(label_index=y[original])
    t0, cpu0 = time.perf_counter(), time.process_time()
    findings, probe_acc = label_issue_findings(frame, pixels, classes,
                                               LabelIssueParams(max_flag_fraction=budget / len(frame)), "flagged")
    t_probe, cpu_probe = time.perf_counter() - t0, time.process_time() - cpu0
    probe_recall = recall_at(findings["item_id"].astype(str), swapped, budget)

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(project / cv.PLOTS_DIR / cv.SHEET_FILE, args.out / "crossval_label_errors.png")
    best = max(scores[f"{r}: recall_at_budget"] for r in cv.RANK_BY)
    figures = {
        "source": str(args.data) if moved else "digits", "swaps_planted_total": len(moved),
        "load_avg_before_crossval": load_before, "load_avg_after": Path("/proc/loadavg").read_text().split()[:3],
        "upstream_s (download..augment)": round(t_up, 1),
        "crossval": f"{args.folds} folds x width {args.width} x {args.epochs} epochs",
        "crossval_stage_s": round(t_cv, 1), "crossval_cpu_s": round(cpu_cv, 1),
        "crossval_metrics": metrics, **scores,
        "probe_s": round(t_probe, 1), "probe_cpu_s": round(cpu_probe, 1), "probe_oos_accuracy": round(probe_acc, 4),
        "probe_recall_at_budget": round(probe_recall, 4),
        "recall_ratio (best net ranking / probe)": round(best / max(probe_recall, 1e-9), 2),
        "cost_ratio (net / probe, wall)": round(t_cv / max(t_probe, 1e-9), 2),
        "cost_ratio (net / probe, cpu)": round(cpu_cv / max(cpu_probe, 1e-9), 2),
    }
    print_figures(figures, args.out, "figures.json")


if __name__ == "__main__":
    main()
