"""``imgpipe export``: the validated dataset in the formats other training code loads.

``FORMATS`` maps a format name to its writer, ``writer(project, out_dir, options) -> dict``
(:mod:`imgpipe.export.formats`); add a format with one line here. docs/versions.md describes
each layout.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imgpipe.export.formats import write_hf, write_imagefolder, write_webdataset
from imgpipe.export.project import ExportImage, ProjectOutputs

__all__ = ["DATASET_FORMATS", "FORMATS", "ExportImage", "ExportOptions", "ProjectOutputs", "export_dataset"]


@dataclass(frozen=True)
class ExportOptions:
    shard_size: int = 10000  # webdataset: samples per tar shard
    extra: dict = field(default_factory=dict)  # options of other writers


Writer = Callable[[ProjectOutputs, Path, ExportOptions], dict]



def _box_writer(fmt: str) -> Writer:
    """Detection labels (:mod:`imgpipe.export.boxes`): the validated boxes, after the checks' decisions."""

    def write(project: ProjectOutputs, out_dir: Path, options: ExportOptions) -> dict:
        from imgpipe.export.boxes import export_validated

        return export_validated(fmt, project.path(project.paths.labels), project.path(project.paths.validated),
                                out_dir)

    return write


DATASET_FORMATS = ("imagefolder", "hf", "webdataset")  # every dataset; the box formats need boxes
FORMATS: dict[str, Writer] = {
    "imagefolder": write_imagefolder,
    "hf": write_hf,
    "webdataset": write_webdataset,
    # box formats (labels.task: detection)
    "voc": _box_writer("voc"),
    "coco": _box_writer("coco"),
    "yolo": _box_writer("yolo"),
    "label-studio": _box_writer("label-studio"),
}


def export_dataset(project: ProjectOutputs, fmt: str, out_dir: Path | str,
                   options: ExportOptions | None = None, overwrite: bool = False) -> dict:
    """Write the validated dataset of ``project`` as ``fmt`` into ``out_dir``, atomically: a
    failure leaves ``out_dir`` as it was. A non-empty ``out_dir`` is refused unless ``overwrite``."""
    from imgpipe.errors import PipelineError
    from imgpipe.io import atomic_dir

    if fmt not in FORMATS:
        raise PipelineError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    options = options or ExportOptions()
    if options.shard_size < 1:
        raise PipelineError(f"--shard-size must be at least 1, got {options.shard_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise PipelineError(f"{out_dir}: not empty; choose a new folder or pass --overwrite")
    with atomic_dir(out_dir) as tmp:
        try:
            summary = FORMATS[fmt](project, tmp, options)
        except FileExistsError as exc:
            raise PipelineError(f"{out_dir}: {exc}") from None
    return {"format": fmt, "out": out_dir.as_posix(), **summary}


# -- the `imgpipe export` subcommand --------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), dest="fmt",
                        help="imagefolder: <split>/<class>/ files; hf: Hugging Face datasets parquet; "
                             "webdataset: tar shards; voc, coco, yolo, label-studio: the validated boxes "
                             "(labels.task: detection)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="write the export here")
    parser.add_argument("--shard-size", type=int, default=ExportOptions.shard_size, metavar="N",
                        help="webdataset: samples per tar shard (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DIR")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (paths.*)")


def run(args: argparse.Namespace) -> int:
    import logging

    from imgpipe.params.base import load
    from imgpipe.params.paths import PathsParams

    paths = load("paths", PathsParams, path=args.params)
    project = ProjectOutputs(args.params.resolve().parent, paths)
    try:
        summary = export_dataset(project, args.fmt, args.out, ExportOptions(shard_size=args.shard_size),
                                 overwrite=args.overwrite)
    except FileNotFoundError as exc:
        from imgpipe.errors import PipelineError

        raise PipelineError(f"{exc.filename}: missing; run `dvc pull` or `dvc repro validate` first") from None
    log = logging.getLogger("imgpipe.export")
    if "boxes" in summary:
        log.info("export: %d boxes on %d images as %s into %s (%d boxes left out by the checks)",
                 summary["boxes"], summary["images"], args.fmt, summary["out"], summary["left_out"])
    else:
        splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
        log.info("export: %d images as %s into %s (%s)", summary["images"], args.fmt, summary["out"], splits)
    return 0
