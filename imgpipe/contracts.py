"""The contracts between stages, in one place: file names, column names, and readers.

docs/DATA_CONTRACTS.md describes these layouts in words; this module is what the code uses, so a
name is written once. Directories themselves come from ``params.yaml`` (``paths.*``); the names
here are relative to them. Readers turn a corrupt or truncated intermediate file into one line
that names the file and the stage to rebuild, instead of a traceback from the parser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe.errors import PipelineError

SPLITS = ("train", "val", "test")

# -- data/raw (download) ---------------------------------------------------------------------------
SOURCE_FILE = "source.json"
FILES_DIR = "files"
PACK_DIR = "packed"
PACK_INDEX = f"{PACK_DIR}/index.parquet"

# -- data/preprocessed (preprocess) ----------------------------------------------------------------
MANIFEST_FILE = "manifest.parquet"
REJECTS_FILE = "rejects.parquet"
PREPROCESS_INFO_FILE = "info.json"
SHARDS_DIR = "shards"

# -- data/labels (labels) --------------------------------------------------------------------------
LABELS_FILE = "labels.parquet"
CLASSES_FILE = "classes.json"
LABEL_ISSUES_FILE = "issues.parquet"
ANNOTATORS_FILE = "annotators.json"  # annotator agreement report (several annotators per image)
BOXES_FILE = "boxes.parquet"  # labels.task detection: BOX_COLUMNS, one row per box
# Pixels of the original image, top-left origin, max exclusive; flags False when the format has none.
BOX_COLUMNS = {"item_id": "string", "box_id": "int32", "label": "string", "xmin": "float64", "ymin": "float64",
               "xmax": "float64", "ymax": "float64", "image_width": "int32", "image_height": "int32",
               "annotator": "string", "difficult": "bool", "truncated": "bool", "iscrowd": "bool",
               "source_split": "string"}
# What preprocess cuts (labels.detection.crops): the kept boxes' geometry only, so a flag or
# annotator edit leaves its hash, and the crops, as they were. Empty when there is nothing to cut.
CROPS_FILE = "crops.parquet"
CROP_COLUMNS = ("item_id", "box_id", "xmin", "ymin", "xmax", "ymax", "source_split")

# -- data/validated (validate) ---------------------------------------------------------------------
DATASET_FILE = "dataset.parquet"
QUARANTINE_FILE = "quarantine.parquet"
EXPECTATIONS_FILE = "expectations.json"  # the deterministic validation result
REVIEW_FILE = "review.parquet"  # REVIEW_COLUMNS: every finding of every check
QUALITY_DETAIL_FILE = "quality_detail.json"  # per-class and per-reason counts
VALIDATE_REPORT_DIR = Path("reports/validate")  # report.html + sheets/*.png (DVC image plots)
VALIDATE_FAILED_DIR = Path("reports/validate-failed")  # what a failed gate leaves (not a DVC output)

# -- data/augmented (augment) ----------------------------------------------------------------------
NORM_FILE = "norm.json"
AUGMENTED_META_FILE = "meta.json"


def split_items_file(split: str) -> str:
    """The index of one split, one row per image the split holds (originals, then offline copies):
    ``ITEM_COLUMNS`` + ``copy`` (0 = the original) + ``label_index`` + where its pixels are
    (``pixels_in``, ``shard``, ``shard_offset``); see :mod:`imgpipe.storedsplit`."""
    return f"{split}_items.parquet"


# -- metrics (tracked by git, `cache: false` in dvc.yaml) ------------------------------------------
PREPROCESS_METRICS = Path("metrics/preprocess.json")
LABELS_METRICS = Path("metrics/labels.json")
DATA_QUALITY_METRICS = Path("metrics/data_quality.json")
EVAL_METRICS = Path("metrics/eval.json")  # headline figures only: what `dvc exp show` compares
# evaluate's detail (plain outputs, not `metrics:`), the data of the plots in dvc.yaml
EVAL_DIR = Path("metrics/eval")
PER_CLASS_METRICS = EVAL_DIR / "per_class.csv"  # class, precision, recall, f1, support
PREDICTIONS_FILE = EVAL_DIR / "predictions.csv"  # one row per test image
RELIABILITY_FILE = EVAL_DIR / "reliability.csv"  # reliability-diagram bins
LABEL_ERRORS_FILE = EVAL_DIR / "label_errors.csv"  # suspected test-label errors, ranked (confident learning)
PER_CLASS_REPORT = EVAL_DIR / "per_class_report.csv"  # per class, worst first: confusion + the card's data side
PER_CLASS_REPORT_MD = EVAL_DIR / "per_class_report.md"  # the same for people
EVAL_PLOTS_DIR = EVAL_DIR / "plots"  # every figure as a PNG (a DVC-cached output)

# -- columns ---------------------------------------------------------------------------------------
ITEM_ID = "item_id"  # POSIX path under <raw>/files/, or "<array file>#<index>"
SOURCE_PATH = "source_path"  # where the image came from, as a person would find it
SOURCE_SPLIT = "source_split"  # train | val | test | "" (the source defines none)
LABEL = "label"
LABEL_INDEX = "label_index"
SPLIT = "split"  # train | val | test, assigned by validate
SHARD = "shard"
SHARD_OFFSET = "shard_offset"
COPY = "copy"  # augmented copy number; 0 = the original image
PIXELS_IN = "pixels_in"  # augment's index: "preprocessed" (an original) or "augmented" (an offline copy)
# What travels with every image from validate on (augmented rows, predictions, review rows), so
# any later output joins back to the image.
ITEM_COLUMNS = (ITEM_ID, SOURCE_PATH)
# The one shape of every cleaning check's findings (imgpipe.validate.*) and of the review table.
# score: the check's measure (similarity, statistic, or for label issues the probability of the
# given label); suggested_score: the probability of suggested_label (NaN when none).
REVIEW_COLUMNS = (ITEM_ID, SOURCE_PATH, "check", "score", "decision", "group_id", "suggested_label",
                  "suggested_score", "detail")


def _corrupt(path: Path, stage: str, detail: str) -> PipelineError:
    return PipelineError(
        f"{path}: corrupt or truncated ({detail}); rebuild it with `dvc repro -f {stage}`"
    )


def read_json_output(path: Path | str, stage: str) -> Any:
    """A JSON file a stage wrote; a missing file raises ``FileNotFoundError`` (run_stage names it)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _corrupt(path, stage, f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError as exc:  # found by fuzzing: was a traceback
        raise _corrupt(path, stage, f"not UTF-8 text (byte {exc.start})") from None


def read_table(path: Path | str, stage: str, columns: list[str] | None = None):
    """A parquet table a stage wrote, as a DataFrame."""
    import pandas as pd
    import pyarrow as pa

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        table = pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _corrupt(path, stage, f"not a readable parquet table: {str(exc).splitlines()[0]}") from None
    # Arrow's allocator keeps the decoding buffers it freed: reading a 300,000-row manifest (96 MB
    # as a frame) left 260 MB resident, 140 MB after this (a million-image validate: ~0.4 GB less).
    pa.default_memory_pool().release_unused()
    return table


def read_array(path: Path | str, stage: str, mmap: bool = True):
    """A ``.npy`` array a stage wrote, memory-mapped by default; never unpickles."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _corrupt(path, stage, f"not a readable .npy array: {str(exc).splitlines()[0]}") from None


def read_classes(labels_dir: Path | str) -> list[str]:
    """The frozen class list (index order) written by the labels stage."""
    path = Path(labels_dir) / CLASSES_FILE
    data = read_json_output(path, "labels")
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise _corrupt(path, "labels", 'expected {"classes": [names...]}')
    return classes


@dataclass(frozen=True)
class SplitArrays:
    x: Any  # uint8 (N, H, W, C): an array, or imgpipe.storedsplit.StoredImages (reads like a memmap)
    # imgpipe.storedsplit.load_split reads one split of the augment stage's output
    y: Any  # int64 (N,)


def load_items(augmented_dir: Path | str, split: str):
    """``item_id``, ``source_path`` and ``copy`` (and where the pixels are) of every row of
    ``imgpipe.storedsplit.load_split(...).x``."""
    return read_table(Path(augmented_dir) / split_items_file(split), "augment")


def load_augmented_meta(augmented_dir: Path | str) -> tuple[dict, dict]:
    """``(meta.json, norm.json)`` of the augment stage."""
    meta = read_json_output(Path(augmented_dir) / AUGMENTED_META_FILE, "augment")
    norm = read_json_output(Path(augmented_dir) / NORM_FILE, "augment")
    return meta, norm


# Built-in sources of handwriting (not photographs): their classes are not mirror-symmetric (augment's
# hflip auto) and their look-alike strokes pass for crops of each other (validate's max_crop auto).
HANDWRITING_SOURCES = frozenset({"digits", "mnist", "fashion-mnist", "emnist", "kmnist"})


def is_handwriting_source(source: str) -> bool:
    return str(source).strip().lower() in HANDWRITING_SOURCES
