"""The per-class view of the data (issue 21): class balance and what every cleaning check found.

One row per class of the frozen class list: images per split of the validated dataset, the
class's share of the images the gate counted against ``validate.max_class_share`` (and that share
as a fraction of the limit), and for every review value a cleaning check writes
(``exact_duplicate``, ``near_duplicate``, ``dark``, ``label_issue``, ``ood``, ...) how many images
of the class it found and what was decided (kept / flagged / dropped / quarantined). A check that
is off says ``"off"``, never 0; a check that had nothing to look at (box checks on classification
labels, faces when none were found) is ``"n/a"`` and left out of the Markdown table and the PNG.
The validate stage records both in ``quality_detail.json`` (``check_status``, ``max_class_share``).

The card stage writes it into ``card.json`` (``per_class``), ``card.md``, ``per_class.csv`` (the
flat table the evaluate stage joins with the network's view, :mod:`imgpipe.evaluate.per_class`)
and ``per_class.png``. Everything here is a pure function of its inputs: the same tables give the
same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgpipe import contracts as c

PER_CLASS_CSV = "per_class.csv"  # in the card folder: read by the evaluate stage
PER_CLASS_PNG = "per_class.png"
DECISIONS = ("kept", "flagged", "dropped", "quarantined")  # weakest to strongest, as the validate loop
REMOVED = ("flagged", "dropped", "quarantined")  # per class: images whose strongest decision is this
GATE_VALUES = ("expectation", "label_import")  # the gate's review values: always on
OFF, NOT_APPLICABLE = "off", "n/a"
DIGITS = 6
PNG_SIZE = (1100, 700)  # pixels; fixed, like every figure of the project
DPI = 100


def columns_shown(status: dict[str, str], review_values: Sequence[str]) -> list[str]:
    """The check columns of the table: gate values that found something, then every registered
    check's values in check order except the ones that did not apply, then any other value the
    review holds (a check the status does not know of)."""
    present = list(dict.fromkeys(str(v) for v in review_values))
    shown = [v for v in GATE_VALUES if v in present and v not in status]
    shown += [v for v, s in status.items() if s != NOT_APPLICABLE and v not in shown]
    shown += sorted(v for v in present if v not in shown)
    return shown


def check_status(detail: dict) -> dict[str, str]:
    """``quality_detail.json``'s ``check_status`` (a list, in check order) as an ordered dict."""
    recorded = detail.get("check_status") or []
    if isinstance(recorded, dict):  # the loop's own form
        return {str(k): str(v) for k, v in recorded.items()}
    return {str(e["check"]): str(e["status"]) for e in recorded}


def class_view(*, dataset: pd.DataFrame, review: pd.DataFrame, labels: pd.DataFrame, classes: Sequence[str],
               detail: dict) -> dict[str, Any]:
    """The per-class view as a JSON-ready dict (see the module docstring).

    ``dataset``: ``dataset.parquet`` (label, split); ``review``: ``review.parquet``; ``labels``:
    ``labels.parquet`` (the label of every image, also of those the checks removed);
    ``detail``: ``quality_detail.json``."""
    classes = [str(k) for k in classes]
    status = check_status(detail)
    limit = detail.get("max_class_share")
    gate_counts = detail.get("per_class") or {}
    shown = columns_shown(status, review["check"].astype(str).tolist() if len(review) else [])

    label_of = dict(zip(labels[c.ITEM_ID].astype(str), labels[c.LABEL].astype(str), strict=True))
    found = review[[c.ITEM_ID, "check", "decision"]].astype(str).drop_duplicates()
    found["class"] = found[c.ITEM_ID].map(label_of).fillna("")
    outside = int((~found["class"].isin(classes)).sum())
    found = found[found["class"].isin(classes)]
    per_value = found.groupby(["class", "check", "decision"]).size()
    rank = {d: i for i, d in enumerate(DECISIONS)}
    strongest = (found.assign(r=found["decision"].map(rank).fillna(0).astype(int))
                 .groupby(["class", c.ITEM_ID])["r"].max().reset_index())
    decided = strongest.groupby(["class", "r"]).size()

    in_split = dataset.groupby([c.LABEL, c.SPLIT]).size() if len(dataset) else pd.Series(dtype=int)
    images = {k: int((gate_counts.get(k) or {}).get("images", 0)) for k in classes}
    if not any(images.values()):  # an older quality_detail.json: the validated dataset's counts
        images = {k: int(sum(in_split.get((k, s), 0) for s in c.SPLITS)) for k in classes}
    total = sum(images.values())

    rows = []
    for k in classes:
        share = images[k] / total if total else 0.0
        cells: dict[str, Any] = {}
        for value in shown:
            if status.get(value) == OFF:
                cells[value] = OFF
                continue
            counts = {d: int(per_value.get((k, value, d), 0)) for d in DECISIONS}
            cells[value] = {"found": sum(counts.values()), **counts}
        rows.append({
            "class": k,
            "splits": {s: int(in_split.get((k, s), 0)) for s in c.SPLITS},
            "images": images[k],
            "share": round(share, DIGITS),
            "share_of_limit": round(share / limit, DIGITS) if limit else None,
            "over_limit": bool(limit is not None and share > limit),
            "checks": cells,
            "decided": {d: int(decided.get((k, rank[d]), 0)) for d in REMOVED},
        })
    return {
        "max_class_share": limit,
        "check_status": {v: status.get(v, "on") for v in shown} | {v: s for v, s in status.items() if v not in shown},
        "columns": shown,
        "classes": rows,
        "findings_outside_classes": outside,  # gate findings on images with no or an unknown label
    }


def flat_table(view: dict) -> pd.DataFrame:
    """One row per class: ``class``, ``train``, ``val``, ``test``, ``images``, ``share``,
    ``share_of_limit``, ``over_limit``, images ``flagged``/``dropped``/``quarantined`` (strongest
    decision), then one column per check value: images found, or ``off``."""
    records = []
    for row in view["classes"]:
        record = {"class": row["class"], **row["splits"], "images": row["images"], "share": row["share"],
                  "share_of_limit": row["share_of_limit"], "over_limit": row["over_limit"], **row["decided"]}
        for value in view["columns"]:
            cell = row["checks"][value]
            record[value] = cell if cell == OFF else str(cell["found"])
        records.append(record)
    columns = ["class", *c.SPLITS, "images", "share", "share_of_limit", "over_limit", *REMOVED, *view["columns"]]
    return pd.DataFrame.from_records(records, columns=columns)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def cell_text(cell: Any) -> str:
    """``off``; ``0``; ``3 flagged``; ``4 (2 kept, 2 dropped)``."""
    if cell == OFF:
        return OFF
    parts = [(cell[d], d) for d in DECISIONS if cell[d]]
    if not parts:
        return "0"
    if len(parts) == 1:
        return f"{parts[0][0]} {parts[0][1]}"
    return f"{cell['found']} (" + ", ".join(f"{n} {d}" for n, d in parts) + ")"


def render_markdown(view: dict) -> list[str]:
    """The card's Markdown section: one table, a class per row in class-index order (as the
    card's other per-class table)."""
    limit = view["max_class_share"]
    lines = ["", "## Per class: balance and what the checks found", "",
             f"Share: the class's part of the {sum(r['images'] for r in view['classes'])} labelled images the gate "
             f"counted, against `validate.max_class_share` = {_pct(limit)} (\"of limit\": the share divided by "
             "the limit; above 100% fails validate). Each check column: images of the class it found and what was "
             "decided; `off` = the check did not run. Picture: `per_class.png`.", ""]
    off = [v for v in view["columns"] if view["check_status"].get(v) == OFF]
    head = ["class", *c.SPLITS, "share", "of limit", *view["columns"], *REMOVED]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in view["classes"]:
        share_of = _pct(row["share_of_limit"]) + (" **over**" if row["over_limit"] else "")
        cells = [str(row["splits"][s]) for s in c.SPLITS] + [_pct(row["share"]), share_of]
        cells += [cell_text(row["checks"][v]) for v in view["columns"]]
        cells += [str(row["decided"][d]) for d in REMOVED]
        name = str(row["class"]).replace("|", "\\|")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    na = [v for v, s in view["check_status"].items() if s == NOT_APPLICABLE]
    notes = []
    if off:
        notes.append(f"Off: {', '.join(off)}.")
    if na:
        notes.append(f"Not applicable to this dataset (nothing to look at): {', '.join(na)}.")
    if view["findings_outside_classes"]:
        notes.append(f"{view['findings_outside_classes']} findings are on images with no or an unknown label "
                     "(not in any row).")
    if notes:
        lines += ["", *notes]
    lines.append("")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def findings_matrix(view: dict) -> tuple[np.ma.MaskedArray, list[str]]:
    """Images found per class (rows) and check value (columns); ``off`` cells masked."""
    values = view["columns"]
    data = np.zeros((len(view["classes"]), len(values)))
    mask = np.zeros_like(data, dtype=bool)
    for i, row in enumerate(view["classes"]):
        for j, value in enumerate(values):
            cell = row["checks"][value]
            if cell == OFF:
                mask[i, j] = True
            else:
                data[i, j] = cell["found"]
    return np.ma.masked_array(data, mask), values


def draw_findings(ax, matrix: np.ma.MaskedArray, columns: Sequence[str], row_names: Sequence[str],
                  title: str) -> None:
    """A heat map of counts; masked (``off``) cells grey and marked ``off``."""
    import matplotlib

    cmap = matplotlib.colormaps["Oranges"].with_extremes(bad="#d9d9d9")
    # Colour per column (a share of that check's largest count): a check that finds 3 images
    # stays visible beside one that finds 160.
    tops = np.ma.filled(np.ma.max(matrix, axis=0), 0) if matrix.shape[0] else np.zeros(matrix.shape[1])
    column_top = np.maximum(np.asarray(tops, dtype=float), 1.0)
    ax.imshow(matrix / column_top, cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    n, m = matrix.shape
    small = 8 if n <= 15 else 6
    ticks = range(n) if n <= 40 else range(0, n, max(1, n // 20))
    ax.set_yticks(list(ticks), [str(row_names[i]) for i in ticks], fontsize=small)
    ax.set_xticks(range(m), [str(v).replace("_", " ") for v in columns], rotation=45, ha="right", fontsize=8)
    if n <= 25 and m <= 20:
        for i in range(n):
            for j in range(m):
                if matrix.mask is not np.ma.nomask and np.ma.getmaskarray(matrix)[i, j]:
                    ax.text(j, i, OFF, ha="center", va="center", fontsize=small, color="#555555")
                else:
                    value = matrix.data[i, j]
                    ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=small,
                            color="white" if value > column_top[j] / 2 else "black")
    ax.set_title(title, fontsize=10)


def per_class_png(view: dict, path: Path, title: str = "Per class") -> None:
    """Left: images each check found per class (heat map, ``off`` grey). Right: each class's share
    of the images with the ``validate.max_class_share`` line; classes over it in red."""
    plt = _pyplot()
    width, height = PNG_SIZE
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    names = [r["class"] for r in view["classes"]]
    matrix, columns = findings_matrix(view)
    heat = fig.add_axes((0.1, 0.22, 0.56, 0.68))
    if columns:
        draw_findings(heat, matrix, columns, names,
                      "Images each check found (colour: share of the column's largest; grey: off)")
    else:
        heat.text(0.5, 0.5, "no cleaning check ran", ha="center", va="center")
        heat.set_axis_off()
    bars = fig.add_axes((0.74, 0.22, 0.23, 0.68))
    share = np.array([r["share"] for r in view["classes"]], dtype=float)
    limit = view["max_class_share"]
    over = np.array([r["over_limit"] for r in view["classes"]], dtype=bool)
    y = np.arange(len(names))
    bars.barh(y, share, color=np.where(over, "#c44e52", "#4c72b0"), height=0.7)
    bars.set_ylim(len(names) - 0.5, -0.5)  # first class on top, as in the heat map
    bars.set_yticks([])
    right = max(float(share.max()) if len(share) else 0.0, 1.0 / max(len(names), 1))
    if len(names):
        bars.axvline(1.0 / len(names), color="grey", linestyle=":", linewidth=1, label="balanced (1 / classes)")
    if limit is not None:
        bars.axvline(limit, color="#c44e52", linestyle="--", linewidth=1.2, label=f"max_class_share {limit:g}")
        right = max(right, min(float(limit), 1.0))
    if len(names):
        bars.legend(loc="lower right", fontsize=7, framealpha=0.9)
    bars.set_xlim(0, min(right * 1.3, 1.0) if right < 1.0 else 1.1)
    if len(names) <= 25:
        for i, value in enumerate(share):
            bars.text(value, i, f" {100 * value:.1f}%", va="center", fontsize=7)
    bars.set_xlabel("share of the images")
    bars.set_title("Class balance", fontsize=10)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=12)
    # metadata: no "Software" version line, so the bytes depend on the picture only.
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def write_card_files(view: dict, folder: Path, name: str) -> None:
    """``per_class.csv`` and ``per_class.png`` into the (temporary) card folder."""
    write_csv(flat_table(view), folder / PER_CLASS_CSV)
    per_class_png(view, folder / PER_CLASS_PNG, f"Dataset {name}: per class")


def per_class_section(labels_dir: Path, validated_dir: Path, folder: Path, card: dict) -> tuple[dict, str]:
    """The card stage's hook: read the validate and labels outputs, write ``per_class.csv`` and
    ``per_class.png`` into ``folder``; return the view (``card.json`` ``per_class``) and its
    Markdown section."""
    view = class_view(
        dataset=c.read_table(validated_dir / c.DATASET_FILE, "validate", columns=[c.LABEL, c.SPLIT]),
        review=c.read_table(validated_dir / c.REVIEW_FILE, "validate", columns=[c.ITEM_ID, "check", "decision"]),
        labels=c.read_table(labels_dir / c.LABELS_FILE, "labels", columns=[c.ITEM_ID, c.LABEL]),
        classes=card["classes"],
        detail=c.read_json_output(validated_dir / c.QUALITY_DETAIL_FILE, "validate"),
    )
    write_card_files(view, folder, card["name"])
    return view, "\n".join(render_markdown(view))


def summary(view: dict) -> dict[str, str]:
    """The card stage's log lines: the largest class against the limit, and the class with the
    most images the checks flagged, dropped or quarantined."""
    rows = view["classes"]
    if not rows:
        return {}
    largest = max(rows, key=lambda r: r["share"])
    most = max(rows, key=lambda r: sum(r["decided"].values()))
    out = {"largest class": f"{largest['class']} {_pct(largest['share'])} of the images "
                            f"(validate.max_class_share {_pct(view['max_class_share'])})"
                            + (" OVER THE LIMIT" if largest["over_limit"] else "")}
    if sum(most["decided"].values()):
        out["most findings"] = f"{most['class']}: " + ", ".join(f"{n} {d}" for d, n in most["decided"].items() if n)
    return out
