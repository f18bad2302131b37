"""The dataset card's box section (``labels.task: detection``): boxes per class and split, the
box size distribution (a PNG), and findings per box check. Nothing without boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe import contracts as c

SIZES_PNG = "box_sizes.png"
PER_CLASS_PNG = "boxes_per_class.png"
BOX_CHECKS = ("box_empty", "box_outside", "box_tiny", "box_aspect", "box_duplicate", "box_conflict", "box_count")


def _box_splits(boxes: pd.DataFrame, dataset: pd.DataFrame) -> pd.Series:
    """Each box's split in the validated dataset ("" when its item left it)."""
    split_of = dict(zip(dataset[c.ITEM_ID].astype(str), dataset[c.SPLIT].astype(str), strict=True))
    names = boxes["item_id"].astype(str) + "#box" + boxes["box_id"].astype(str)
    by_crop = names.map(split_of)
    return by_crop.fillna(boxes["item_id"].map(split_of)).fillna("")


def _figure(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    draw(ax)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def box_section(labels_dir: Path, validated_dir: Path, out_dir: Path, classes: list[str]) -> tuple[dict, str]:
    """``(card["boxes"], markdown)``; writes the PNGs into ``out_dir``. Empty without boxes."""
    path = Path(labels_dir) / c.BOXES_FILE
    boxes = c.read_table(path, "labels") if path.exists() else None
    if boxes is None or boxes.empty:
        return {}, ""
    dataset = c.read_table(Path(validated_dir) / c.DATASET_FILE, "validate")
    review_path = Path(validated_dir) / c.REVIEW_FILE
    review = c.read_table(review_path, "validate") if review_path.exists() else pd.DataFrame(
        {"check": [], "decision": []}, dtype="str")
    split = _box_splits(boxes, dataset)
    kept = boxes[split != ""].assign(split=split[split != ""])
    splits = [s for s in c.SPLITS if s in set(kept["split"])]
    grouped = kept.groupby(["split", "label"]).size()
    per_class = {s: {cls: int(grouped.get((s, cls), 0)) for cls in classes} for s in splits}
    side = np.sqrt(np.clip(kept["xmax"] - kept["xmin"], 0, None) * np.clip(kept["ymax"] - kept["ymin"], 0, None))
    box_findings = review[review["check"].isin(BOX_CHECKS)]
    findings = {check: {d: int(n) for d, n in box_findings[box_findings["check"] == check]["decision"]
                        .value_counts().sort_index().items()} for check in BOX_CHECKS}
    quantiles = {f"p{q:02d}": round(float(np.percentile(side, q)), 2) for q in (5, 50, 95)} if len(side) else {}
    section = {"boxes": int(len(boxes)), "kept": int(len(kept)), "per_split_and_class": per_class,
               "size_sqrt_area_px": quantiles, "findings": findings,
               "figures": [SIZES_PNG, PER_CLASS_PNG]}

    def sizes(ax):
        bins = np.geomspace(max(1.0, float(side.min()) if len(side) else 1.0), max(2.0, float(side.max()) + 1), 30)
        for s in splits:
            ax.hist(side[kept["split"] == s], bins=bins, histtype="step", label=s)
        ax.set_xscale("log")
        ax.set_xlabel("box size: sqrt(area), original pixels")
        ax.set_ylabel("boxes")
        ax.set_title("Box sizes (validated boxes)")
        ax.legend()

    def counts(ax):
        x = np.arange(len(classes))
        width = 0.8 / max(len(splits), 1)
        for k, s in enumerate(splits):
            ax.bar(x + k * width, [per_class[s][cls] for cls in classes], width, label=s)
        ax.set_xticks(x + width * (len(splits) - 1) / 2, classes, rotation=45, ha="right")
        ax.set_ylabel("boxes")
        ax.set_title("Boxes per class and split")
        ax.legend()

    _figure(Path(out_dir) / SIZES_PNG, sizes)
    _figure(Path(out_dir) / PER_CLASS_PNG, counts)
    lines = ["", "## Boxes", "", f"{len(kept)} of {len(boxes)} boxes in the validated dataset; "
             f"size (sqrt of area, px): {', '.join(f'{k} {v:g}' for k, v in quantiles.items())}.", "",
             "| class | " + " | ".join(splits) + " | total |", "|---|" + "---:|" * (len(splits) + 1)]
    for cls in classes:
        per = [per_class[s][cls] for s in splits]
        lines.append(f"| {cls} | " + " | ".join(map(str, per)) + f" | {sum(per)} |")
    lines += ["", "| box check | findings |", "|---|---|"]
    lines += [f"| {check} | {', '.join(f'{d} {n}' for d, n in found.items()) or 'none'} |"
              for check, found in findings.items()]
    lines += ["", f"![box sizes]({SIZES_PNG}) ![boxes per class]({PER_CLASS_PNG})", ""]
    return section, "\n".join(lines)
