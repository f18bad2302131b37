"""The per-class report (issue 21): the network's view of each class joined with the data's.

One row per class, worst first: the share of the class's test images the network got wrong
(``misclassified`` = 1 - recall), the class it most often took them for (``confused_with``, from
the confusion matrix, with ``confused_count`` images and ``confused_share`` of the class's test
images), precision, recall, F1 and support (as ``per_class.csv``), the suspected test-label errors
whose given label is the class (``label_errors.csv``), and then the card's per-class table
(``data/card/per_class.csv``, :mod:`imgpipe.perclass`): images per split, the share against
``validate.max_class_share``, images flagged/dropped/quarantined, and images each cleaning check
found (``off`` when it did not run). Ties rank by more confused images, then lower F1, then class
order, so the ranking is a pure function of the counts.

Written as ``metrics/eval/per_class_report.csv``, ``metrics/eval/per_class_report.md`` and
``metrics/eval/plots/per_class_report.png``. Without the card's table (the stage run outside
DVC) the data-side columns are left out and the Markdown says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

MODEL_COLUMNS = ("rank", "class", "misclassified", "confused_with", "confused_count", "confused_share",
                 "precision", "recall", "f1", "support", "suspected_label_errors")
DIGITS = 6
CARD_FIXED = ("class", "train", "val", "test", "images", "share", "share_of_limit", "over_limit",
              "flagged", "dropped", "quarantined")  # the card table's columns before the check columns


def most_confused(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per actual class: the predicted class it is most often mistaken for (lowest index on a tie;
    -1 when none of its images was mistaken) and how many images."""
    off = np.asarray(cm, dtype=np.int64).copy()
    np.fill_diagonal(off, 0)
    target = off.argmax(axis=1) if off.size else np.zeros(0, dtype=np.int64)
    count = off[np.arange(len(off)), target] if off.size else np.zeros(0, dtype=np.int64)
    return np.where(count > 0, target, -1), count


def read_card_table(path: Path | None) -> pd.DataFrame | None:
    """The card's ``per_class.csv`` as text columns (cells stay as written: counts or ``off``);
    None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    from imgpipe.errors import PipelineError

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise PipelineError(f"{path}: corrupt or truncated ({str(exc).splitlines()[0]}); rebuild it with "
                            "`dvc repro -f card`") from None
    if "class" not in table.columns:
        raise PipelineError(f"{path}: no class column; rebuild it with `dvc repro -f card`")
    return table


def per_class_report(table: pd.DataFrame, cm: np.ndarray, errors: pd.DataFrame,
                     card: pd.DataFrame | None = None) -> pd.DataFrame:
    """The report, worst class first. ``table``: the evaluate stage's per-class scores (class
    order); ``cm``: confusion counts ``[actual, predicted]``; ``errors``: ``label_errors.csv``;
    ``card``: the card's per-class table or None."""
    classes = [str(k) for k in table["class"]]
    cm = np.asarray(cm, dtype=np.int64)
    support = cm.sum(axis=1)
    wrong = support - np.diag(cm)
    target, count = most_confused(cm)
    misclassified = np.divide(wrong, support, out=np.zeros(len(classes)), where=support > 0)
    suspects = errors["label"].astype(str).value_counts() if len(errors) else pd.Series(dtype=int)
    report = pd.DataFrame({
        "class": classes,
        "misclassified": np.round(misclassified, DIGITS),
        "confused_with": [classes[t] if t >= 0 else "" for t in target],
        "confused_count": count.astype(np.int64),
        "confused_share": np.round(np.divide(count, support, out=np.zeros(len(classes)), where=support > 0),
                                   DIGITS),
        "precision": table["precision"].to_numpy(float),
        "recall": table["recall"].to_numpy(float),
        "f1": table["f1"].to_numpy(float),
        "support": support.astype(np.int64),
        "suspected_label_errors": [int(suspects.get(k, 0)) for k in classes],
    })
    report["_index"] = np.arange(len(classes))
    report = report.sort_values(["misclassified", "confused_count", "f1", "_index"],
                                ascending=[False, False, True, True], kind="stable").drop(columns="_index")
    report.insert(0, "rank", np.arange(1, len(report) + 1, dtype=np.int64))
    if card is not None:
        data = card.rename(columns={k: f"data_{k}" for k in card.columns if k in MODEL_COLUMNS and k != "class"})
        report = report.merge(data.astype({"class": str}), on="class", how="left", sort=False)
        report = report.fillna({k: "" for k in data.columns if k != "class"})
    return report.reset_index(drop=True)


def check_columns(report: pd.DataFrame) -> list[str]:
    """The card's check columns carried into the report (after its fixed columns)."""
    known = set(MODEL_COLUMNS) | set(CARD_FIXED) | {f"data_{k}" for k in CARD_FIXED}
    return [k for k in report.columns if k not in known]


def _found_text(row: pd.Series, checks: Sequence[str]) -> str:
    """The checks that found images of the class: ``near_duplicate 29, ood 1`` (zeros and offs left out)."""
    parts = [f"{k} {row[k]}" for k in checks if str(row[k]) not in ("", "0", "off")]
    return ", ".join(parts) or "none"


def render_markdown(report: pd.DataFrame, has_card: bool) -> str:
    checks = check_columns(report)
    lines = ["# Per-class report (test split)", "",
             "Worst class first: `misclassified` is the share of the class's test images the network got wrong; "
             "`most confused with` is the class it took most of them for (images, share of the class); "
             "`label errors` are suspected test-label errors with that given label (`label_errors.csv`).",
             ""]
    if has_card:
        lines += ["Data side (the dataset card, `data/card/per_class.csv`): `share` of the labelled images "
                  "(and of `validate.max_class_share`), images flagged / dropped / quarantined by the cleaning "
                  "checks, and which checks found images of the class.", ""]
    else:
        lines += ["(No data-side table: `data/card/per_class.csv` is missing; run `dvc repro card`.)", ""]
    head = ["rank", "class", "misclassified", "most confused with", "recall", "precision", "f1", "support",
            "label errors"]
    if has_card:
        head += ["share (of limit)", "flagged", "dropped", "quarantined", "checks that found images"]
    lines += ["| " + " | ".join(head) + " |", "|---:|---|---:|---|---:|---:|---:|---:|---:|"
              + ("---:|---:|---:|---:|---|" if has_card else "")]
    for _, row in report.iterrows():
        confused = (f"{row['confused_with']} ({row['confused_count']}, {100 * row['confused_share']:.0f}%)"
                    if row["confused_with"] else "none")
        cells = [str(row["rank"]), str(row["class"]).replace("|", "\\|"), f"{100 * row['misclassified']:.1f}%",
                 confused, f"{row['recall']:.3f}", f"{row['precision']:.3f}", f"{row['f1']:.3f}",
                 str(row["support"]), str(row["suspected_label_errors"])]
        if has_card:
            share = _pct_text(row.get("share", "")) + (f" ({_pct_text(row.get('share_of_limit', ''))})"
                                                        if row.get("share_of_limit", "") else "")
            cells += [share, *(str(row.get(k, "")) for k in ("flagged", "dropped", "quarantined")),
                      _found_text(row, checks)]
        lines.append("| " + " | ".join(cells) + " |")
    off = [k for k in checks if (report[k].astype(str) == "off").any()]
    if off:
        lines += ["", f"Checks that were off: {', '.join(off)}."]
    lines.append("")
    return "\n".join(lines)


def _pct_text(value) -> str:
    try:
        return f"{100 * float(value):.1f}%"
    except (TypeError, ValueError):
        return str(value)


def report_png(report: pd.DataFrame, path: Path, has_card: bool) -> None:
    """Left: misclassified share per class, worst on top, labelled with the class it is most
    confused with. Middle: suspected test-label errors per class. Right: the data side, images
    each cleaning check found (the card's heat map, rows in the same order)."""
    from imgpipe.evaluate import plots
    from imgpipe.perclass import OFF, draw_findings

    fig = plots._figure("per_class_report")
    n = len(report)
    names = report["class"].astype(str).tolist()
    y = np.arange(n)
    small = 8 if n <= 15 else 6
    # the three panels share their vertical extent, so a class's row lines up across them
    bars = fig.add_axes((0.08, 0.22, 0.3, 0.68))
    bars.barh(y, report["misclassified"], color="#c44e52", height=0.7)
    bars.set_ylim(n - 0.5, -0.5)
    ticks = range(n) if n <= 40 else range(0, n, max(1, n // 20))
    bars.set_yticks(list(ticks), [names[i] for i in ticks], fontsize=small)
    right = min(1.0, max(0.1, float(report["misclassified"].max()) if n else 0.0))
    bars.set_xlim(0, right * 1.45)  # room for the labels
    bars.set_xlabel("share of the class's test images misclassified")
    if n <= 25:
        for i, row in enumerate(report.itertuples(index=False)):
            if row.confused_with:
                bars.text(row.misclassified, i, f" {100 * row.misclassified:.1f}% -> {row.confused_with} "
                          f"({row.confused_count})", va="center", fontsize=small)
    bars.set_title("Misclassified, and the class most taken for", fontsize=10)
    bars.grid(axis="x", alpha=0.3)
    suspects = fig.add_axes((0.41, 0.22, 0.1, 0.68), sharey=bars)
    suspects.barh(y, report["suspected_label_errors"], color="#8172b2", height=0.7)
    suspects.tick_params(axis="y", labelleft=False)
    if n <= 25:
        for i, value in enumerate(report["suspected_label_errors"]):
            suspects.text(value, i, f" {value}", va="center", fontsize=small)
    suspects.set_xlim(0, max(int(report["suspected_label_errors"].max()) if n else 0, 1) * 1.35)
    suspects.set_xlabel("suspected label errors")
    suspects.set_title("Label errors", fontsize=10)
    heat = fig.add_axes((0.58, 0.22, 0.4, 0.68))
    checks = check_columns(report) if has_card else []
    if checks:
        cells = report[checks].astype(str).to_numpy()
        mask = cells == OFF
        counts = np.where(mask, "0", np.where(cells == "", "0", cells)).astype(np.int64)
        draw_findings(heat, np.ma.masked_array(counts.astype(float), mask), checks, names,
                      "Data side: images each check found")
    else:
        heat.text(0.5, 0.5, "no data-side table\n(run `dvc repro card`)" if not has_card else "no cleaning check ran",
                  ha="center", va="center", fontsize=10)
        heat.set_axis_off()
    fig.suptitle(f"Per class, worst first ({int(report['support'].sum())} test images)", fontsize=12)
    plots._save(fig, path)


def write_per_class_report(table: pd.DataFrame, cm: np.ndarray, errors: pd.DataFrame, card_table: Path | None,
                           csv_path: Path, md_path: Path, png_path: Path) -> dict:
    """The evaluate stage's hook: write the three files; return a line for the stage summary."""
    from imgpipe.io import atomic_file

    card = read_card_table(card_table)
    report = per_class_report(table, cm, errors, card)
    with atomic_file(csv_path) as tmp:
        report.to_csv(tmp, index=False, lineterminator="\n")
    with atomic_file(md_path) as tmp:
        tmp.write_text(render_markdown(report, card is not None))
    report_png(report, png_path, card is not None)
    worst = report.head(3)
    return {"most confused classes": ", ".join(
        f"{r['class']} {100 * r['misclassified']:.1f}%" + (f" (-> {r['confused_with']})" if r["confused_with"] else "")
        for _, r in worst.iterrows())}
