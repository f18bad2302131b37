"""``imgpipe diff [REV_A] [REV_B]``: what changed in the data and the model between two versions.

Reads the stage outputs at each revision through DVC's file system (``dvc.api.DVCFileSystem``:
git for git-tracked files, the local cache or the default remote for DVC outputs), never by
checking anything out, so a fresh clone that can reach the remote compares any two versions. A
revision is anything git or ``dvc exp`` names: a tag (``dataset@v1.0.0``), a branch, a commit, an
experiment; ``workspace`` (the default B) is the files on disk.

The dataset part joins the two ``dataset.parquet`` tables on ``item_id``: images added and
removed, relabelled (with each side's ``label_source``), split moves, per-class counts and
shares, the quality counters, the findings (``review.parquet``) that appeared or went away, and
the card's content hash. The model part sets ``metrics/eval.json`` and ``per_class.csv`` side by
side and lists the test images whose prediction flipped (``predictions.csv``, by ``item_id``).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from imgpipe import contracts as c
from imgpipe.errors import PipelineError

WORKSPACE = "workspace"
MARKDOWN_ROWS = 20  # rows per list in the Markdown report (the JSON holds every row)
SHEET_FLIPS = 16  # worst flips on the contact sheet

log = logging.getLogger("imgpipe.diff")


class MissingOutput(PipelineError):
    """An output the revision records, but neither in the local cache nor on the remote."""


@dataclass
class Revision:
    """One side of the diff: the project's files as they were at ``rev`` (None: the workspace)."""

    root: Path
    rev: str | None

    def __post_init__(self):
        from dvc.api import DVCFileSystem

        self.name = self.rev or WORKSPACE
        try:
            self.fs = DVCFileSystem(str(self.root), rev=self.commit())
        except Exception as exc:  # dvc raises its own types for unknown revisions
            raise PipelineError(f"{self.name}: not a revision of {self.root} "
                                f"(a tag, branch, commit or experiment name): {_first_line(exc)}") from None
        self.paths = self._paths()

    def commit(self) -> str | None:
        """The commit ``rev`` names; experiment names too, which the file system alone does not resolve."""
        if self.rev is None:
            return None
        from dvc.scm import SCM, resolve_rev

        return resolve_rev(SCM(str(self.root)), self.rev)

    def _paths(self):
        import yaml

        from imgpipe.params.paths import PathsParams

        raw = self.read_bytes("params.yaml")
        data = yaml.safe_load(raw) if raw else {}
        return PathsParams.model_validate((data or {}).get("paths") or {})

    def read_bytes(self, path: str | Path) -> bytes | None:
        """The file's bytes at this revision; None when the revision has no such file (the stage
        did not exist or never ran there); :class:`MissingOutput` when it is recorded but unreachable."""
        path = PurePosixPath(path).as_posix()
        try:
            with self.fs.open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            if self._tracked(path):  # recorded in dvc.lock, content nowhere to be found
                raise self._missing(path) from None
            return None
        except IsADirectoryError:
            raise PipelineError(f"{self.name}: {path} is a folder, expected a file") from None
        except Exception as exc:  # dvc_data's DataIndexDirError (a folder's listing is missing), ...
            if type(exc).__module__.startswith(("dvc", "dvc_data", "dvc_objects")):
                raise self._missing(path) from None
            raise PipelineError(f"{self.name}: cannot read {path}: {_first_line(exc)}") from None

    def _tracked(self, path: str) -> bool:
        """Whether ``path`` or a folder above it is a DVC output at this revision."""
        parts = PurePosixPath(path).parts
        for n in range(len(parts), 0, -1):
            try:
                dvc_info = self.fs.info("/".join(parts[:n])).get("dvc_info") or {}
                if dvc_info.get("isout") and dvc_info.get("md5"):  # an output with a recorded hash
                    return True
            except Exception:  # noqa: S112 (absent here: look further up)
                continue
        return False

    def _missing(self, path: str) -> MissingOutput:
        rev = self.rev or "the workspace"
        return MissingOutput(
            f"{rev}: {path} is neither in the local cache nor on the default remote (a folder in each "
            f"person's home until the project shares an S3 remote); push it from a machine that has it "
            f"(`dvc push`, `dvc exp push` for an experiment), or rebuild it here: "
            f"`git checkout {self.rev or 'HEAD'} && dvc repro` (about 30 s on the default digits)")

    def table(self, path: str | Path, columns: list[str] | None = None):
        import pandas as pd

        data = self.read_bytes(path)
        return None if data is None else pd.read_parquet(io.BytesIO(data), columns=columns)

    def csv(self, path: str | Path):
        import pandas as pd

        data = self.read_bytes(path)
        return None if data is None else pd.read_csv(io.BytesIO(data), dtype={"class": str, "actual": str,
                                                                            "predicted": str})

    def json(self, path: str | Path) -> Any:
        data = self.read_bytes(path)
        return None if data is None else json.loads(data)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- the dataset ----------------------------------------------------------------------------------


def dataset_diff(a, b, labels_a=None, labels_b=None, review_a=None, review_b=None,
                 quality_a=None, quality_b=None, card_a=None, card_b=None) -> dict:
    """What changed between two ``dataset.parquet`` tables (and their labels, findings, card)."""
    ids_a, ids_b = set(a[c.ITEM_ID]), set(b[c.ITEM_ID])
    cols = [c.ITEM_ID, c.LABEL, c.SPLIT]
    both = a[cols].merge(b[cols], on=c.ITEM_ID, suffixes=("_a", "_b")).sort_values(c.ITEM_ID)
    source_a = _label_sources(labels_a)
    source_b = _label_sources(labels_b)
    relabelled = [
        {"item_id": i, "old": la, "new": lb, "source_a": source_a.get(i, ""), "source_b": source_b.get(i, "")}
        for i, la, lb in zip(both[c.ITEM_ID], both["label_a"].astype(str), both["label_b"].astype(str),
                             strict=True) if la != lb
    ]
    moved = [{"item_id": i, "old": sa, "new": sb}
             for i, sa, sb in zip(both[c.ITEM_ID], both["split_a"], both["split_b"], strict=True) if sa != sb]
    label_of_a = dict(zip(a[c.ITEM_ID], a[c.LABEL].astype(str), strict=True))
    label_of_b = dict(zip(b[c.ITEM_ID], b[c.LABEL].astype(str), strict=True))
    return {
        "images": {"a": len(a), "b": len(b)},
        "added": [{"item_id": i, "label": label_of_b[i]} for i in sorted(ids_b - ids_a)],
        "removed": [{"item_id": i, "label": label_of_a[i]} for i in sorted(ids_a - ids_b)],
        "relabelled": relabelled,
        "split_moves": moved,
        "classes": _class_changes(a, b),
        "quality": _side_by_side(quality_a or {}, quality_b or {}),
        "findings": _findings_diff(review_a, review_b),
        "card_hash": {"a": (card_a or {}).get("content_hash"), "b": (card_b or {}).get("content_hash")},
    }


def _label_sources(labels) -> dict[str, str]:
    if labels is None or "label_source" not in labels:
        return {}
    return dict(zip(labels[c.ITEM_ID], labels["label_source"].astype(str), strict=True))


def _class_changes(a, b) -> list[dict]:
    """Per class: images at each side, their share of all images, and the deltas (every split)."""
    count_a = a[c.LABEL].astype(str).value_counts()
    count_b = b[c.LABEL].astype(str).value_counts()
    rows = []
    for name in sorted(set(count_a.index) | set(count_b.index), key=_class_key):
        na, nb = int(count_a.get(name, 0)), int(count_b.get(name, 0))
        sa, sb = na / max(len(a), 1), nb / max(len(b), 1)
        row = {"class": name, "a": na, "b": nb, "delta": nb - na, "share_a": round(sa, 6),
               "share_b": round(sb, 6), "share_delta": round(sb - sa, 6)}
        for split in c.SPLITS:
            row[f"{split}_a"] = int(((a[c.LABEL].astype(str) == name) & (a[c.SPLIT] == split)).sum())
            row[f"{split}_b"] = int(((b[c.LABEL].astype(str) == name) & (b[c.SPLIT] == split)).sum())
        rows.append(row)
    return rows


def _class_key(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _side_by_side(a: dict, b: dict) -> list[dict]:
    """Numeric entries of two flat metric dicts: both values and the delta (None when one lacks it)."""
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in (va, vb)):
            continue
        delta = None if va is None or vb is None else round(vb - va, 6)
        rows.append({"name": key, "a": va, "b": vb, "delta": delta})
    return rows


def _findings_diff(review_a, review_b) -> dict:
    """Findings (``item_id``, check, decision) that appeared at B or went away, and counts per check."""
    def keyed(review) -> set[tuple[str, str, str]]:
        if review is None or review.empty:
            return set()
        return set(zip(review[c.ITEM_ID].astype(str), review["check"].astype(str),
                       review["decision"].astype(str), strict=True))

    fa, fb = keyed(review_a), keyed(review_b)
    checks = sorted({k[1] for k in fa | fb})
    counts = [{"check": ch, "a": sum(1 for k in fa if k[1] == ch), "b": sum(1 for k in fb if k[1] == ch)}
              for ch in checks]

    def listed(keys):
        return [{"item_id": i, "check": ch, "decision": d} for i, ch, d in sorted(keys)]

    return {"per_check": counts, "appeared": listed(fb - fa), "gone": listed(fa - fb)}


# -- the model ------------------------------------------------------------------------------------


def model_diff(eval_a: dict | None, eval_b: dict | None, per_class_a=None, per_class_b=None,
               predictions_a=None, predictions_b=None) -> dict:
    """Headline metrics and per-class figures side by side, and the test images whose prediction flipped."""
    per_class = []
    if per_class_a is not None and per_class_b is not None:
        pa = per_class_a.set_index("class")
        pb = per_class_b.set_index("class")
        for name in sorted(set(pa.index) | set(pb.index), key=_class_key):
            row = {"class": name}
            for metric in ("precision", "recall", "f1", "support"):
                va = float(pa.loc[name, metric]) if name in pa.index else None
                vb = float(pb.loc[name, metric]) if name in pb.index else None
                row[f"{metric}_a"], row[f"{metric}_b"] = va, vb
                row[f"{metric}_delta"] = None if va is None or vb is None else round(vb - va, 6)
            per_class.append(row)
    flips = {"right_to_wrong": [], "wrong_to_right": [], "compared": 0}
    if predictions_a is not None and predictions_b is not None:
        cols = [c.ITEM_ID, "actual", "predicted", "confidence"]
        both = predictions_a[cols].merge(predictions_b[cols], on=c.ITEM_ID, suffixes=("_a", "_b"))
        flips["compared"] = len(both)
        right_a = both["actual_a"].astype(str) == both["predicted_a"].astype(str)
        right_b = both["actual_b"].astype(str) == both["predicted_b"].astype(str)
        for key, mask in (("right_to_wrong", right_a & ~right_b), ("wrong_to_right", ~right_a & right_b)):
            # worst first: the most confident wrong (or newly right) predictions at B
            rows = both[mask].sort_values(["confidence_b", c.ITEM_ID], ascending=[False, True], kind="stable")
            flips[key] = [
                {"item_id": r.item_id, "actual": str(r.actual_b), "predicted_a": str(r.predicted_a),
                 "predicted_b": str(r.predicted_b), "confidence_a": round(float(r.confidence_a), 6),
                 "confidence_b": round(float(r.confidence_b), 6)}
                for r in rows.itertuples(index=False)
            ]
    return {"metrics": _side_by_side(eval_a or {}, eval_b or {}), "per_class": per_class, "flips": flips}


# -- reading both sides ---------------------------------------------------------------------------


def diff_revisions(root: Path, rev_a: str | None, rev_b: str | None) -> dict:
    """The full report between two revisions of the project at ``root``."""
    sides = [Revision(root, rev_a), Revision(root, rev_b)]
    report: dict[str, Any] = {"a": sides[0].name, "b": sides[1].name, "notes": []}
    data = [_read_dataset(side) for side in sides]
    if all(d is not None for d in data):
        report["dataset"] = dataset_diff(*[d["dataset"] for d in data],
                                         **{f"{k}_{s}": d[k] for s, d in zip("ab", data, strict=True)
                                            for k in ("labels", "review", "quality", "card")})
    else:
        for side, d in zip(sides, data, strict=True):
            if d is None:
                report["notes"].append(f"{side.name}: no validated dataset ({side.paths.validated}); "
                                       "run the pipeline there first")
    models = [_read_model(side) for side in sides]
    if all(m is not None for m in models):
        report["model"] = model_diff(*[m["eval"] for m in models], *[m["per_class"] for m in models],
                                     *[m["predictions"] for m in models])
    else:
        for side, m in zip(sides, models, strict=True):
            if m is None:
                report["notes"].append(f"{side.name}: no evaluation ({c.EVAL_METRICS}); no model diff")
    return report


def _read_dataset(side: Revision) -> dict | None:
    dataset = side.table(side.paths.validated / c.DATASET_FILE, [c.ITEM_ID, c.LABEL, c.SPLIT])
    if dataset is None:
        return None
    review_cols = [c.ITEM_ID, "check", "decision"]
    return {
        "dataset": dataset,
        "labels": side.table(side.paths.labels / c.LABELS_FILE, [c.ITEM_ID, "label_source"]),
        "review": side.table(side.paths.validated / c.REVIEW_FILE, review_cols),
        "quality": side.json(c.DATA_QUALITY_METRICS),
        "card": side.json(side.paths.card / "card.json"),
    }


def _read_model(side: Revision) -> dict | None:
    metrics = side.json(c.EVAL_METRICS)
    if metrics is None:
        return None
    return {"eval": metrics, "per_class": side.csv(c.PER_CLASS_METRICS),
            "predictions": side.csv(c.PREDICTIONS_FILE)}


# -- output ---------------------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _delta(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not float(v).is_integer():
        return f"{v:+.4g}"
    return f"{int(v):+d}" if v else "0"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return out


def _listing(title: str, rows: list[dict], header: list[str], cells) -> list[str]:
    if not rows:
        return []
    out = [f"**{title}: {len(rows)}**", ""]
    out += _table(header, [cells(r) for r in rows[:MARKDOWN_ROWS]])
    if len(rows) > MARKDOWN_ROWS:
        out.append(f"\n… and {len(rows) - MARKDOWN_ROWS} more (`--json` lists them all)")
    return out + [""]


def markdown(report: dict) -> str:
    """The report as Markdown, fit to paste into a pull request."""
    a, b = report["a"], report["b"]
    lines = [f"## imgpipe diff: `{a}` → `{b}`", ""]
    lines += [f"- {note}" for note in report["notes"]] + ([""] if report["notes"] else [])
    d = report.get("dataset")
    if d:
        h = d["card_hash"]
        lines += ["### Dataset", "",
                  f"{d['images']['a']} → {d['images']['b']} images: {len(d['added'])} added, "
                  f"{len(d['removed'])} removed, {len(d['relabelled'])} relabelled, "
                  f"{len(d['split_moves'])} moved between splits.", "",
                  f"Card content hash: `{(h['a'] or '–')[:16]}` → `{(h['b'] or '–')[:16]}`"
                  + (" (unchanged)" if h["a"] == h["b"] else ""), ""]
        lines += _listing("Added", d["added"], ["item_id", "label"], lambda r: [f"`{r['item_id']}`", r["label"]])
        lines += _listing("Removed", d["removed"], ["item_id", "label"],
                          lambda r: [f"`{r['item_id']}`", r["label"]])
        lines += _listing("Relabelled", d["relabelled"], ["item_id", "old → new", "label source"],
                          lambda r: [f"`{r['item_id']}`", f"{r['old']} → {r['new']}",
                                     r["source_b"] if r["source_a"] == r["source_b"]
                                     else f"{r['source_a'] or '–'} → {r['source_b'] or '–'}"])
        lines += _listing("Moved between splits", d["split_moves"], ["item_id", "old → new"],
                          lambda r: [f"`{r['item_id']}`", f"{r['old']} → {r['new']}"])
        changed = [r for r in d["classes"] if r["delta"] or r["share_delta"]]
        if changed:
            lines += ["**Per class** (images, share of all)", ""]
            lines += _table(["class", a, b, "Δ", "share", "Δ share"],
                            [[r["class"], r["a"], r["b"], _delta(r["delta"]),
                              f"{r['share_a']:.1%} → {r['share_b']:.1%}", f"{r['share_delta'] * 100:+.2f} pt"]
                             for r in changed]) + [""]
        quality = [r for r in d["quality"] if r["delta"]]
        if quality:
            lines += ["**Quality checks** (`metrics/data_quality.json`, changed counters)", ""]
            lines += _table(["counter", a, b, "Δ"],
                            [[r["name"], _fmt(r["a"]), _fmt(r["b"]), _delta(r["delta"])] for r in quality]) + [""]
        f = d["findings"]
        lines += _listing("Findings that appeared", f["appeared"], ["item_id", "check", "decision"],
                          lambda r: [f"`{r['item_id']}`", r["check"], r["decision"]])
        lines += _listing("Findings that went away", f["gone"], ["item_id", "check", "decision"],
                          lambda r: [f"`{r['item_id']}`", r["check"], r["decision"]])
    m = report.get("model")
    if m:
        lines += ["### Model", ""]
        lines += _table(["metric", a, b, "Δ"],
                        [[r["name"], _fmt(r["a"]), _fmt(r["b"]), _delta(r["delta"])] for r in m["metrics"]])
        lines.append("")
        if m["per_class"]:
            lines += ["**Per class** (test split)", ""]
            lines += _table(["class", "precision", "recall", "f1", "Δ f1", "support"],
                            [[r["class"], f"{_fmt(r['precision_a'])} → {_fmt(r['precision_b'])}",
                              f"{_fmt(r['recall_a'])} → {_fmt(r['recall_b'])}",
                              f"{_fmt(r['f1_a'])} → {_fmt(r['f1_b'])}", _delta(r["f1_delta"]),
                              f"{_fmt(r['support_a'])} → {_fmt(r['support_b'])}"] for r in m["per_class"]])
            lines.append("")
        fl = m["flips"]
        lines += [f"Test images compared by `item_id`: {fl['compared']}; right → wrong: "
                  f"{len(fl['right_to_wrong'])}, wrong → right: {len(fl['wrong_to_right'])}.", ""]
        cells = lambda r: [f"`{r['item_id']}`", r["actual"], f"{r['predicted_a']} → {r['predicted_b']}",  # noqa: E731
                           f"{r['confidence_b']:.3f}"]
        header = ["item_id", "actual", "predicted", "confidence"]
        lines += _listing("Right → wrong", fl["right_to_wrong"], header, cells)
        lines += _listing("Wrong → right", fl["wrong_to_right"], header, cells)
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(report: dict, out_dir: Path, root: Path, rev_b: str | None) -> list[str]:
    """``report.md``, ``report.json`` and the PNGs (per-class changes, worst flips) into ``out_dir``."""
    from imgpipe.io import atomic_file, write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / "report.md") as tmp:
        tmp.write_text(markdown(report))
    write_json(out_dir / "report.json", report)
    written = ["report.md", "report.json"]
    if report.get("dataset"):
        _classes_png(report, out_dir / "classes.png")
        written.append("classes.png")
    if report.get("model") and report["model"]["per_class"]:
        _per_class_png(report, out_dir / "per_class.png")
        written.append("per_class.png")
    if (report.get("model") and report["model"]["flips"]["right_to_wrong"]
            and _flips_png(report, Revision(root, rev_b), out_dir / "flips.png")):
        written.append("flips.png")
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "imgpipe"
    return plt


def _save(fig, path: Path) -> None:
    from imgpipe.io import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)


def _classes_png(report: dict, path: Path) -> None:
    import numpy as np

    plt = _pyplot()
    rows = report["dataset"]["classes"]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    ax.barh(y - 0.2, [r["a"] for r in rows], height=0.4, label=report["a"], color="#9bb7d4")
    ax.barh(y + 0.2, [r["b"] for r in rows], height=0.4, label=report["b"], color="#1f5f9f")
    for i, r in enumerate(rows):
        if r["delta"]:
            ax.text(max(r["a"], r["b"]), i, f" {r['delta']:+d}", va="center", fontsize=8)
    ax.set_yticks(y, [r["class"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title("Images per class")
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _per_class_png(report: dict, path: Path) -> None:
    import numpy as np

    plt = _pyplot()
    rows = report["model"]["per_class"]
    deltas = [r["f1_delta"] or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    ax.barh(np.arange(len(rows)), deltas, color=["#b03a2e" if d < 0 else "#1e8449" for d in deltas])
    ax.set_yticks(np.arange(len(rows)), [r["class"] for r in rows])
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"F1 change, {report['a']} → {report['b']} (test split)")
    ax.set_title("Per-class F1 change")
    fig.tight_layout()
    _save(fig, path)


def _flips_png(report: dict, side: Revision, path: Path) -> bool:
    """A contact sheet of the worst right → wrong flips, pixels read from B's preprocessed shards."""
    from imgpipe.validate.sheets import _draw_rows

    flips = report["model"]["flips"]["right_to_wrong"][:SHEET_FLIPS]
    dataset = side.table(side.paths.validated / c.DATASET_FILE, [c.ITEM_ID, c.SHARD, c.SHARD_OFFSET])
    if dataset is None:
        return False
    where = dataset.set_index(c.ITEM_ID)
    tiles = []
    for flip in flips:
        if flip["item_id"] not in where.index:
            continue
        shard, offset = where.loc[flip["item_id"], [c.SHARD, c.SHARD_OFFSET]]
        pixels = read_shard_image(side, int(shard), int(offset))
        tiles.append((pixels, f"{flip['actual']}→{flip['predicted_b']} {flip['confidence_b']:.2f}"))
    if not tiles:
        return False
    rows = [tiles[i:i + 8] for i in range(0, len(tiles), 8)]
    _draw_rows(rows, f"Right -> wrong at {report['b']} (actual->predicted, confidence)", path)
    return True


def read_shard_image(side: Revision, shard: int, offset: int):
    """One image of a preprocessed shard, read through DVC without loading the whole shard (raw
    pixels, or one JPEG/PNG of an encoded shard, found by its byte index)."""
    import numpy as np

    from imgpipe.preprocess.shards import encoded_shard_name, shard_name

    encoded = (side.paths.preprocessed / encoded_shard_name(shard)).as_posix()
    if side.fs.exists(encoded):
        return _read_encoded_image(side, encoded, shard, offset)
    path = (side.paths.preprocessed / shard_name(shard)).as_posix()
    with side.fs.open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = read_header(fh)
        size = int(np.prod(shape[1:])) * dtype.itemsize
        start = fh.tell() + offset * size
        if fh.seekable():
            fh.seek(start)
        else:
            fh.read(start - fh.tell())
        return np.frombuffer(fh.read(size), dtype=dtype).reshape(shape[1:])


def _read_encoded_image(side: Revision, encoded: str, shard: int, offset: int):
    import io
    import json

    import numpy as np

    from imgpipe.contracts import PREPROCESS_INFO_FILE
    from imgpipe.preprocess.shards import decode_image, encoded_index_name

    base = side.paths.preprocessed
    with side.fs.open((base / encoded_index_name(shard)).as_posix(), "rb") as fh:
        bounds = np.load(io.BytesIO(fh.read()), allow_pickle=False)
    with side.fs.open((base / PREPROCESS_INFO_FILE).as_posix(), "rb") as fh:
        channels = int(json.loads(fh.read())["channels"])
    start, stop = int(bounds[offset]), int(bounds[offset + 1])
    with side.fs.open(encoded, "rb") as fh:
        if fh.seekable():
            fh.seek(start)
        else:
            fh.read(start)
        return decode_image(fh.read(stop - start), channels)


# -- the `imgpipe diff` subcommand ----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rev_a", nargs="?", default="HEAD", metavar="REV_A",
                        help="tag (dataset@v1.0.0), branch, commit or experiment (default HEAD)")
    parser.add_argument("rev_b", nargs="?", default=WORKSPACE, metavar="REV_B",
                        help=f"the same, or `{WORKSPACE}` (the default): the files on disk")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write report.md, report.json and the PNGs (per-class changes, flips) here")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the project (default: here)")


def run(args: argparse.Namespace) -> int:
    import sys

    from imgpipe.io import dumps_json

    def rev(value: str) -> str | None:
        return None if value == WORKSPACE else value

    root = args.repo.resolve()
    report = diff_revisions(root, rev(args.rev_a), rev(args.rev_b))
    sys.stdout.write(dumps_json(report) if args.json else markdown(report))
    if args.out:
        written = write_outputs(report, args.out, root, rev(args.rev_b))
        log.info("diff: wrote %s into %s", ", ".join(written), args.out)
    return 0
