"""Pictures and a page for a person: one contact-sheet PNG per check, and an offline HTML report.

Sheets are drawn with Pillow (no fonts to fetch, no scripts), so ``dvc plots show`` displays them
offline as image plots. The bytes depend only on the inputs: no timestamps anywhere.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe.contracts import ITEM_ID

TILE = 96  # pixels per image on a sheet
CAPTION = 24
PAD = 4
TOP = 20  # groups / images shown per sheet
SHEETS = ("near_duplicates", "exact_duplicates", "label_issues", "outliers")


def _tile(pixels: np.ndarray):
    from PIL import Image

    if isinstance(pixels, Image.Image):  # already drawn on (boxes)
        return pixels.convert("RGB").resize((TILE, TILE), Image.NEAREST)
    img = pixels if pixels.shape[-1] == 3 else np.repeat(pixels, 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(img)).resize((TILE, TILE), Image.NEAREST)


def _draw_rows(rows: list[list[tuple[np.ndarray, str]]], title: str, path: Path) -> None:
    """One row of captioned tiles per entry (a duplicate group, or a band of single images)."""
    from PIL import Image, ImageDraw

    cols = max((len(r) for r in rows), default=1)
    width = PAD + cols * (TILE + PAD)
    height = 18 + PAD + max(len(rows), 1) * (TILE + CAPTION + PAD)
    sheet = Image.new("RGB", (max(width, 320), height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 3), title, fill="black")
    if not rows:
        draw.text((PAD, 24), "nothing found", fill="grey")
    y = 18 + PAD
    for row in rows:
        for j, (pix, caption) in enumerate(row):
            x = PAD + j * (TILE + PAD)
            sheet.paste(_tile(pix), (x, y))
            for k, line in enumerate(caption.split("\n")[:2]):
                draw.text((x, y + TILE + 1 + k * 11), line[:16], fill="black")
        y += TILE + CAPTION + PAD
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG", optimize=False)


def draw_sheets(review: pd.DataFrame, pixels: np.ndarray | None, index: dict, labels: dict, out_dir: Path,
                boxes: pd.DataFrame | None = None) -> list[str]:
    """Write ``<out_dir>/<sheet>.png`` for every sheet; returns the file names.

    The sheets above are always written; every other check in ``review`` (the plug-ins': box
    checks, faces, ...) gets a sheet of its own, named after it, when it found something. With
    ``boxes`` (detection labels on whole images), a box finding's tile has the image's boxes
    drawn, the one it is about in red."""
    out_dir = Path(out_dir)
    names = []

    def pix(item: str) -> np.ndarray | None:
        return pixels[index[item]] if pixels is not None and item in index else None

    def groups_rows(check: str) -> list[list[tuple[np.ndarray, str]]]:
        found = review[review["check"].isin([check, "leakage"]) if check == "near_duplicate" else review["check"] == check]
        rows = []
        ranked = found.groupby("group_id")["score"].min().sort_values(ascending=False, kind="stable")
        for gid in ranked.index[:TOP]:
            members = found[found["group_id"] == gid]
            row = [(pix(i), f"{labels.get(i, '?')} {d[:4]}\n{s:.3f}") for i, d, s in
                   members[[ITEM_ID, "decision", "score"]].itertuples(index=False)]
            row = [(p, c) for p, c in row if p is not None][:8]
            if row:
                rows.append(row)
        return rows

    def band(items: list[tuple[np.ndarray, str]], per_row: int = 10) -> list[list[tuple[np.ndarray, str]]]:
        return [items[i : i + per_row] for i in range(0, len(items), per_row)]

    sheets = {
        "near_duplicates": ("Top near-duplicate groups (label, decision, similarity)", groups_rows("near_duplicate")),
        "exact_duplicates": ("Top exact-duplicate groups (label, decision)", groups_rows("exact_duplicate")),
    }
    lab = review[review["check"] == "label_issue"].sort_values(["score", ITEM_ID], kind="stable").head(TOP)
    # The top of a self-confidence ranking has p(given) near 0: print it in e-notation (at 3 decimals
    # every caption read 0.000) beside p(suggested).
    sheets["label_issues"] = ("Top suspected label errors (given -> suggested; p(given) / p(suggested))", band(
        [(pix(i), f"{labels.get(i, '?')}->{s}\n{sc:.1e}/{ss:.2f}") for i, s, sc, ss in
         lab[[ITEM_ID, "suggested_label", "score", "suggested_score"]].itertuples(index=False)
         if pix(i) is not None]))
    out = review[review["check"].isin(["dark", "overexposed", "near_constant", "blurry", "odd_size", "odd_aspect"])]
    out = out.head(TOP)
    sheets["outliers"] = ("Outliers (check, measured value)", band(
        [(pix(i), f"{c}\n{sc:.4g}") for i, c, sc in out[[ITEM_ID, "check", "score"]].itertuples(index=False)
         if pix(i) is not None]))
    ood = review[review["check"] == "ood"].sort_values(["score", ITEM_ID], ascending=[False, True], kind="stable")
    sheets["ood"] = ("Images that belong to no class (label, robust distance^2)", band(
        [(pix(i), f"{labels.get(i, '?')}\n{sc:.1f}") for i, sc in ood.head(TOP)[[ITEM_ID, "score"]].itertuples(index=False)
         if pix(i) is not None]))
    covered = {"near_duplicate", "leakage", "exact_duplicate", "label_issue", "ood", "expectation", "label_import",
               "dark", "overexposed", "near_constant", "blurry", "odd_size", "odd_aspect"}
    for check in sorted(set(review["check"].astype(str)) - covered):
        rows = review[review["check"] == check].sort_values([ITEM_ID, "group_id"], kind="stable").head(TOP)
        items = []
        for item, group, score, decision in rows[[ITEM_ID, "group_id", "score", "decision"]].itertuples(index=False):
            image = pix(item)
            if image is None:
                continue
            items.append((_with_boxes(image, item, str(group), boxes), f"{decision[:4]} {score:.3g}"))
        sheets[check] = (f"{check.replace('_', ' ')} (decision, score)", band(items))
    for name, (title, rows) in sheets.items():
        _draw_rows(rows, title, out_dir / f"{name}.png")
        names.append(f"{name}.png")
    return names


def _with_boxes(image: np.ndarray, item: str, group: str, boxes: pd.DataFrame | None):
    """The image with its boxes drawn (the finding's box, named ``<item>#box<id>`` by
    ``group_id``, in red), or the image as it is when there are no boxes to draw."""
    if boxes is None or boxes.empty or "box_id" not in boxes.columns:
        return image
    mine = boxes[boxes[ITEM_ID] == item]
    if mine.empty:  # a crop item is its own box already
        return image
    from PIL import Image

    from imgpipe.validate.checks.boxes import draw_boxes

    highlight = {int(group.rsplit("#box", 1)[1])} if "#box" in group and group.rsplit("#box", 1)[1].isdigit() else set()
    img = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
    tile = Image.fromarray(np.ascontiguousarray(img)).resize((TILE, TILE), Image.NEAREST)
    return draw_boxes(tile, mine, highlight)


def _cell(v) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return ""
    return str(v)


def _table(frame: pd.DataFrame, limit: int = 200) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.head(limit).itertuples(index=False)
    )
    more = f"<p>... {len(frame) - limit} more rows in the table file.</p>" if len(frame) > limit else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def finding_counts(rows: pd.DataFrame) -> str:
    """``550 flagged, 118 kept``: what a check acted on, with the images it kept (a duplicate
    group's representative) counted apart, not in the findings."""
    counts = rows["decision"].value_counts()
    acted = [f"{int(counts[d])} {d}" for d in ("quarantined", "dropped", "flagged") if d in counts]
    kept = [f"{int(counts['kept'])} kept"] if "kept" in counts else []
    return ", ".join(acted + kept) or "0"


def write_report(path: Path, title: str, quality: dict, expectations: list[dict], review: pd.DataFrame | None,
                 sheets: list[str], error: str = "", offending: pd.DataFrame | None = None) -> None:
    """A self-contained HTML page (inline CSS, no scripts, no CDN), deterministic bytes."""
    css = ("body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse;font-size:13px}"
           "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}.bad{color:#b00}.ok{color:#070}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    if error:
        parts.append(f"<p class='bad'><b>The stage failed:</b> {html.escape(error)}</p>")
    if quality:
        # object dtype: a column mixing ints and fractions would print every count as a float (1797.0)
        counts = pd.DataFrame({"count": list(sorted(quality)), "value": pd.Series(
            [quality[k] for k in sorted(quality)], dtype=object)})
        parts.append("<h2>Counts</h2>" + _table(counts))
    if expectations:
        exp = pd.DataFrame(expectations)
        exp["success"] = exp["success"].map({True: "pass", False: "FAIL"})
        parts.append("<h2>Expectations</h2>" + _table(exp))
    if offending is not None and len(offending):
        parts.append(f"<h2>Offending rows ({len(offending)})</h2>" + _table(offending))
    for name in sheets:
        parts.append(f"<h2>{html.escape(name[:-4].replace('_', ' '))}</h2><img src='sheets/{html.escape(name)}'>")
    if review is not None and len(review):
        for check, rows in review.groupby("check", sort=True):
            parts.append(f"<h2>Findings: {html.escape(str(check))} ({finding_counts(rows)})</h2>" + _table(rows, 100))
    parts.append("</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts))
