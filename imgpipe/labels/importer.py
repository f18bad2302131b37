"""Label import (stage ``labels``): any supported label source to one frozen, checked label table.

Reads ``<raw>`` (the download stage's output, not preprocess) and writes ``<out>/labels.parquet``,
``classes.json``, ``issues.parquet`` and ``annotators.json`` (agreement between annotators) as
docs/DATA_CONTRACTS.md describes. Formats: ImageFolder,
CSV/TSV, CIFAR pickles, MNIST IDX label files, and Label Studio JSON, JSON-MIN and CSV exports of
a Choices project. Every problem is counted with examples, and handled by its ``labels.on_*``
policy; a ``fail`` policy stops the stage before anything is written.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from imgpipe import arrayfiles
from imgpipe.contracts import (
    ANNOTATORS_FILE,
    BOXES_FILE,
    CLASSES_FILE,
    CROP_COLUMNS,
    CROPS_FILE,
    LABEL_ISSUES_FILE,
    LABELS_FILE,
)
from imgpipe.errors import LabelError, PipelineError
from imgpipe.io import atomic_dir, write_json, write_parquet
from imgpipe.labels.boxes.table import empty_table
from imgpipe.labels.classnames import FEW_IMAGES, class_list_text, few_images_text, merge_class_variants
from imgpipe.labels.formats import (
    detect_format,
    read_array_labels,
    read_cifar_labels,
    read_csv_labels,
    read_idx_labels,
    read_imagefolder_labels,
)
from imgpipe.labels.match import ItemMatcher, reference_parts
from imgpipe.labels.resolve import (
    PROBLEMS,
    Resolution,
    enforce_policies,
    freeze_classes,
    match_votes,
    problem_report,
    resolve_votes,
)
from imgpipe.labels.source import LabelSource, choose_source
from imgpipe.labelstudio.read import (
    read_label_studio_csv,
    read_label_studio_json,
    read_label_studio_json_min,
)
from imgpipe.params.download import DownloadParams
from imgpipe.params.labels import LabelsParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.privacy.pseudonyms import apply_to_votes
from imgpipe.rawdata import CIFAR10_DIR, CIFAR100_DIR, FILES_DIR, RawItem, SourceInfo, list_items

__all__ = [
    "PROBLEMS",
    "ItemMatcher",
    "LabelSource",
    "Resolution",
    "choose_source",
    "detect_format",
    "enforce_policies",
    "freeze_classes",
    "match_votes",
    "read_array_labels",
    "read_cifar_labels",
    "read_csv_labels",
    "read_idx_labels",
    "read_imagefolder_labels",
    "read_label_studio_csv",
    "read_label_studio_json",
    "read_label_studio_json_min",
    "read_votes",
    "reference_parts",
    "resolve_votes",
    "import_labels",
]

log = logging.getLogger("imgpipe")



def array_classes(info: SourceInfo, files_dir: Path) -> list[str]:
    """Class names by index for a CIFAR/IDX source: source.json, else the CIFAR meta file, else none."""
    if info.classes:
        return list(info.classes)
    for meta in (files_dir / CIFAR10_DIR / "batches.meta", files_dir / CIFAR100_DIR / "meta"):
        if meta.exists():
            return arrayfiles.load_cifar_meta(meta)
    return []  # the caller then names class i "i", so indices keep their meaning


def idx_image_file(label_path: Path, name: str, items: Sequence[RawItem]) -> str:
    """The IDX image file a label file belongs to: by name (train-labels-idx1 -> train-images-idx3),
    else the only image file with as many images as the file has labels."""
    counts: dict[str, int] = {}
    for item in items:
        if item.index is not None:
            counts[item.file] = counts.get(item.file, 0) + 1
    wanted = label_path.name.replace("labels-idx1", "images-idx3")
    by_name = [f for f in counts if Path(f).name == wanted]
    if len(by_name) == 1:
        return by_name[0]
    try:
        n = len(arrayfiles.load_idx(label_path))
    except PipelineError as exc:
        raise LabelError(str(exc).replace(str(label_path), name)) from None
    same = [f for f, c in counts.items() if c == n]
    if len(same) == 1:
        return same[0]
    raise LabelError(f"{name}: cannot tell which image file these {n} labels belong to "
                     "(name it like train-labels-idx1-ubyte.gz)")


def read_votes(source: LabelSource, raw_dir: Path, info: SourceInfo, items: Sequence[RawItem],
               cfg: LabelsParams) -> pd.DataFrame:
    """The votes table of :mod:`imgpipe.labeltable` for the chosen source."""
    files_dir = Path(raw_dir) / FILES_DIR
    fmt, path, name = source.format, source.path, source.name
    image_keys = (cfg.file_column, "image")
    if fmt == "imagefolder":
        if any(item.index is not None for item in items):
            raise LabelError(f"labels.format is imagefolder, but the {info.source} source keeps its images "
                             "in array files, not class folders")
        return read_imagefolder_labels([item.item_id for item in items])
    if path is None:  # an official layout's own label arrays
        return read_array_labels(files_dir, info.layout, array_classes(info, files_dir))
    if fmt in ("csv", "tsv"):
        return read_csv_labels(path, sep="\t" if fmt == "tsv" else ",", file_column=cfg.file_column,
                               label_column=cfg.label_column, name=name)
    if fmt == "cifar":
        return read_cifar_labels(path, array_classes(info, files_dir), name=name)
    if fmt == "idx":
        return read_idx_labels(path, idx_image_file(path, name, items), array_classes(info, files_dir), name=name)
    if fmt == "label-studio-json":
        return read_label_studio_json(path, image_keys=image_keys, choices_names=(cfg.label_column,), name=name)
    if fmt == "label-studio-json-min":
        return read_label_studio_json_min(path, image_keys=image_keys, label_keys=(cfg.label_column,), name=name)
    if fmt == "label-studio-csv":
        return read_label_studio_csv(path, image_keys=image_keys, label_keys=(cfg.label_column,), name=name)
    raise LabelError(f"labels.format {fmt!r} is not supported")


def _source_classes(source: LabelSource, info: SourceInfo, cfg: LabelsParams, files_dir: Path,
                    votes: pd.DataFrame) -> list[str]:
    """The classes the source defines, used when labels.classes is empty: only for the source's
    own labels (an outside label file may name its classes differently) and for label arrays,
    whose numbers are class indices: with no names, class i is "i", so indices never move."""
    if source.format in ("cifar", "idx"):
        names = array_classes(info, files_dir)
        numbers = [int(label) for label in votes["label"] if label.isdigit()]
        return names or ([str(i) for i in range(max(numbers) + 1)] if numbers else [])
    return list(info.classes or []) if not cfg.path.strip() else []


def _counts_text(issues: pd.DataFrame, action: str) -> str:
    rows = issues[issues["action"] == action]
    if rows.empty:
        return "none"
    counts = rows["problem"].value_counts()
    return ", ".join(f"{problem} {counts[problem]}" for problem in PROBLEMS if problem in counts)


def _annotators_text(report: dict) -> str:
    worst = sorted((a for a in report["annotators"] if a["agreement"] is not None), key=lambda a: a["agreement"])
    lowest = f"; lowest agreement: {worst[0]['annotator']} {worst[0]['agreement']:.2f}" if worst else ""
    kappa = report["fleiss_kappa"]
    kappa_text = f"{kappa:.3f}" if kappa is not None else "undefined"
    return (f"{len(report['annotators'])} annotators, {report['images_with_several_votes']} images with several "
            f"votes, Fleiss' kappa {kappa_text} ({report['vote']} vote){lowest}; see {ANNOTATORS_FILE}")


def import_labels(raw_dir: Path, out_dir: Path, cfg: LabelsParams, download_cfg: DownloadParams | None = None,
                  privacy_cfg: PrivacyParams | None = None) -> dict:
    """Import the labels of ``raw_dir`` into ``out_dir``; return the stage summary.

    The summary's ``metrics`` entry is the content of ``metrics/labels.json``: counts per problem
    with up to five examples, the chosen format, class and labelled counts.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if cfg.task == "detection":  # boxes: imgpipe/labels/boxes
        from imgpipe.labels.boxes.load import import_detection

        return import_detection(raw_dir, out_dir, cfg)
    info = SourceInfo.read(raw_dir)
    with tempfile.TemporaryDirectory(prefix="imgpipe-labels-") as fetch_dir:
        source = choose_source(raw_dir, info, cfg, Path(fetch_dir), download_cfg)
        # Said before reading, so a failure below is read knowing which format was tried.
        log.info("labels: reading %s as %s%s", source.name, source.format, " (detected)" if source.auto else "")
        items = list_items(raw_dir, info)
        votes = read_votes(source, raw_dir, info, items, cfg)
    votes, pseudonymised = apply_to_votes(votes, privacy_cfg)  # before anything is written or logged
    item_ids = [item.item_id for item in items]
    files_dir = raw_dir / FILES_DIR
    source_classes = _source_classes(source, info, cfg, files_dir, votes)
    votes, variants = merge_class_variants(votes, cfg.classes or source_classes, cfg.on_class_variant, source.name)
    matched = match_votes(votes, ItemMatcher(item_ids))
    classes, classes_from = freeze_classes(matched, cfg.classes, source_classes)
    if not classes:
        sample = next(iter(votes["reference"]), "")
        hint = f" (e.g. {sample!r} matches none)" if sample else ""
        raise LabelError(f"{source.name}: no labels for any of the {len(items)} images{hint}")
    result = resolve_votes(matched, item_ids, classes, cfg, label_source=source.label_source,
                           label_file=source.name)
    enforce_policies(result.issues, cfg, source.name)
    with atomic_dir(out_dir) as tmp:
        write_parquet(result.labels, tmp / LABELS_FILE)
        write_json(tmp / CLASSES_FILE, {"classes": classes})
        write_parquet(result.issues, tmp / LABEL_ISSUES_FILE)
        write_json(tmp / ANNOTATORS_FILE, {**result.annotators, "pseudonymised": pseudonymised})
        write_parquet(empty_table(), tmp / BOXES_FILE)  # no boxes
        write_parquet(empty_table()[list(CROP_COLUMNS)], tmp / CROPS_FILE)  # preprocess depends on it

    labelled = len(result.labels)
    metrics = {
        "format": source.format,
        "format_auto": source.auto,
        "format_reason": source.reason,
        "label_source": source.label_source,
        "images": len(items),
        "labelled": labelled,
        "unlabelled": len(items) - labelled,
        "classes": len(classes),
        "classes_from": classes_from,
        "class_variants_merged": len(variants),
        "dropped": int((result.issues["action"] == "drop").sum()),
        "quarantined": int((result.issues["action"] == "quarantine").sum()),
        "problems": problem_report(result.issues, cfg),
        **result.stats,
    }
    several = result.annotators["images_with_several_votes"]
    if several:  # the labelling-quality figure worth comparing; detail in annotators.json
        metrics["fleiss_kappa"] = result.annotators["fleiss_kappa"]
    how = "auto: " if source.auto else ""
    summary = {
        "format": f"{source.format} ({how}{source.reason})",
        "label file": source.name,
        "images": len(items),
        "labelled": labelled,
        "classes": f"{len(classes)} ({classes_from}): {class_list_text(classes)}",
        f"classes under {FEW_IMAGES} images": few_images_text(result.labels, classes),
        **({"class variants merged": "; ".join(v.text for v in variants)} if variants else {}),
        "votes": f"{result.stats['votes']} ({result.stats['cancelled_skipped']} cancelled skipped, "
                 f"{result.stats['majority_resolved']} settled by majority)",
        "dropped": _counts_text(result.issues, "drop"),
        "quarantined": _counts_text(result.issues, "quarantine"),
        **({"annotators": _annotators_text(result.annotators)} if several else {}),
        "metrics": metrics,
    }
    return summary


# Text that explains the run (why a format was chosen, where classes came from) is logged; the
# metrics file keeps what compares across experiments, so `dvc exp show` columns stay useful.
_LOG_ONLY = ("format_auto", "format_reason", "label_source", "classes_from")


def dvc_metrics(metrics: dict) -> dict:
    """The content of ``metrics/labels.json``: counts, the format, and per problem its count and
    up to five examples (the policy that applied is in params.yaml)."""
    slim = {k: v for k, v in metrics.items() if k not in _LOG_ONLY}
    slim["problems"] = {
        name: {"count": entry["count"], "examples": entry["examples"]} for name, entry in metrics["problems"].items()
    }
    return slim
