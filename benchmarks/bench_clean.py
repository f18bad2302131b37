"""Validate/clean at full size: the whole validate stage on the 50,000 CIFAR-10 training JPEGs,
near-duplicate search against brute force, and recall of planted label swaps.

    python benchmarks/bench_clean.py [--data ../shared/data/cifar10-train.tar.gz]

1. A copy of the project with ``download.source`` set to the archive; ``dvc repro labels
   preprocess`` (not timed as part of validate), then ``python -m stages.validate`` timed, with its
   peak memory (max RSS of the child). Prints the counts; the contact sheets are copied to
   ``--out`` so a person can look at them.
2. Near-duplicate search (LSH) vs the all-pairs reference on 5,000 images (4,500 real + 500
   planted copies: shifted by 1-2 px, JPEG re-encoded, resized down and up, brightened): time of
   each, speed ratio, recall of the planted copies, and how many of the reference's pairs LSH finds.
3. 1% of the labels swapped to another class at random; the label-issue check's recall of the
   swaps and the size of its flagged list.

Without the archive it falls back to generated images (figures then mean little).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _project import PROJECT as ROOT
from _project import fresh_project, run, shared_data, swap_labels

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "validate"))  # planted.py: the copies the tests plant


# The stage as `python -m stages.validate` runs it, reporting its own peak RSS on the way out.
MEASURED_STAGE = ("import resource, runpy, sys\n"
                  "try:\n    runpy.run_module('stages.validate', run_name='__main__')\n"
                  "finally:\n    print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def planted_copies(pixels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    from planted import brightened, reencoded, resized, shifted

    kinds = {"shift1": lambda im: shifted(im, 1, 0), "shift2": lambda im: shifted(im, 2, 1),
             "jpeg": reencoded, "resize": resized, "bright": brightened}
    names = list(kinds)
    out = [kinds[names[i % len(names)]](img) for i, img in enumerate(pixels)]
    return np.stack(out), [names[i % len(names)] for i in range(len(pixels))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=shared_data("cifar10-train.tar.gz"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_clean"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_clean_out"))
    args = ap.parse_args()
    from imgpipe import contracts as c
    from imgpipe.params.validate import LabelIssueParams
    from imgpipe.preprocess.shards import gather
    from imgpipe.validate.duplicates import brute_force_pairs, near_duplicate_pairs
    from imgpipe.validate.label_issues import label_issue_findings

    if args.data.exists():
        fresh_project(args.workdir, str(args.data.resolve()))
        source = str(args.data)
    else:
        fresh_project(args.workdir)
        source = "digits (built-in; the CIFAR-10 archive is missing)"
    t_up, _ = run([sys.executable, "-m", "dvc", "repro", "labels", "preprocess"], args.workdir)
    t_validate, log = run([sys.executable, "-c", MEASURED_STAGE], args.workdir)
    peak_kib = int(log.rsplit("PEAK_KIB", 1)[1].split()[0])
    print(log.rsplit("PEAK_KIB", 1)[0][-2500:])
    quality = json.loads((args.workdir / c.DATA_QUALITY_METRICS).read_text())
    detail = json.loads((args.workdir / "data/validated" / c.QUALITY_DETAIL_FILE).read_text())
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(args.workdir / c.VALIDATE_REPORT_DIR, args.out)
    shutil.copy2(args.workdir / "data/validated" / c.REVIEW_FILE, args.out / c.REVIEW_FILE)

    # -- near duplicates vs brute force on 5,000 ------------------------------------------------
    import pandas as pd

    manifest = pd.read_parquet(args.workdir / "data/preprocessed" / c.MANIFEST_FILE)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(manifest), min(4500, len(manifest) - 1), replace=False))
    rows = manifest.iloc[pick]
    base = gather(args.workdir / "data/preprocessed", rows[c.SHARD].to_numpy(), rows[c.SHARD_OFFSET].to_numpy())
    n_copies = len(base) // 9
    copies, kinds = planted_copies(base[:n_copies], rng)
    images = np.concatenate([base, copies])
    truth = {(k, len(base) + k) for k in range(n_copies)}
    t0 = time.perf_counter()
    brute = brute_force_pairs(images, 0.98)
    t_brute = time.perf_counter() - t0
    t0 = time.perf_counter()
    lsh = near_duplicate_pairs(images, 0.98)
    t_lsh = time.perf_counter() - t0
    sb = set(zip(brute["a"].tolist(), brute["b"].tolist(), strict=True))
    sl = set(zip(lsh["a"].tolist(), lsh["b"].tolist(), strict=True))
    recall = len(truth & sl) / len(truth)
    per_kind = {k: round(float(np.mean([(i, len(base) + i) in sl for i in range(n_copies) if kinds[i] == k])), 3)
                for k in sorted(set(kinds))}

    # -- planted label swaps -------------------------------------------------------------------
    data = pd.read_parquet(args.workdir / "data/validated" / c.DATASET_FILE)
    classes = json.loads((args.workdir / "data/labels/classes.json").read_text())["classes"]
    pixels = gather(args.workdir / "data/preprocessed", data[c.SHARD].to_numpy(), data[c.SHARD_OFFSET].to_numpy())
    labels = data["label_index"].to_numpy().copy()
    swaps, swapped_to = swap_labels(labels, len(classes), len(labels) // 100, rng)
    labels[swaps] = swapped_to
    t0 = time.perf_counter()
    found, accuracy = label_issue_findings(data.assign(label_index=labels), pixels, classes, LabelIssueParams(),
                                           "flagged")
    t_labels = time.perf_counter() - t0
    flagged = set(found["item_id"])
    swapped = set(data["item_id"].to_numpy()[swaps])
    load = Path("/proc/loadavg").read_text().split()[:3]
    figures = {
        "source": source, "images": int(quality["images_decoded"]), "load_avg": load,
        "upstream_s (download+preprocess+labels)": round(t_up, 1),
        "validate_stage_s": round(t_validate, 1), "validate_peak_rss_mib": round(peak_kib / 1024),
        "exact_duplicate_groups": quality["exact_duplicate_groups"],
        "near_duplicate_groups": quality["near_duplicate_groups"],
        "suspected_label_errors": quality["label_issues"], "outliers": quality["outliers"],
        "outlier_checks": detail["outlier_checks"], "label_model_oos_accuracy": detail["label_model_oos_accuracy"],
        "images_valid": quality["images_valid"], "quarantined": quality["images_quarantined"],
        "neardup_images": len(images), "neardup_brute_s": round(t_brute, 2), "neardup_lsh_s": round(t_lsh, 2),
        "neardup_speedup": round(t_brute / t_lsh, 2), "neardup_planted_recall": round(recall, 4),
        "neardup_recall_per_kind": per_kind,
        "neardup_lsh_finds_of_brute_pairs": round(len(sb & sl) / max(len(sb), 1), 4),
        "neardup_pairs_brute": len(sb), "neardup_pairs_lsh": len(sl),
        "swaps": len(swaps), "swap_flagged_list": len(flagged),
        "swap_recall": round(len(flagged & swapped) / len(swapped), 4),
        "swap_list_over_swaps": round(len(flagged) / len(swapped), 2), "swap_run_s": round(t_labels, 1),
        "swap_model_oos_accuracy": round(accuracy, 4),
    }
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:40s} {value}")
    print(f"sheets and review table: {args.out}")


if __name__ == "__main__":
    main()
