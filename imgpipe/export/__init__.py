"""``imgpipe export --format ... --out DIR``: the validated dataset in other tools' formats.

``FORMATS`` maps a format name to its writer ``(boxes, images, classes, out_dir) -> summary``.
(Minimal version from the "boxes" branch: the box formats only; the "versions" branch owns this
module, and the lead merges the two registries.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgpipe.export.boxes import BOX_WRITERS

FORMATS = {**BOX_WRITERS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="what to write")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="a new folder (never overwritten)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (paths.*)")


def run(args: argparse.Namespace) -> int:
    from imgpipe.errors import PipelineError
    from imgpipe.export.boxes import export_validated
    from imgpipe.params.base import load
    from imgpipe.params.paths import PathsParams

    if args.out.exists():
        raise PipelineError(f"{args.out}: already exists; give a new folder (nothing is overwritten)")
    paths = load("paths", PathsParams, path=args.params)
    summary = export_validated(args.format, paths.labels, paths.validated, args.out)
    print(f"imgpipe export: {summary['boxes']} boxes on {summary['images']} images as {args.format} in {args.out} "
          f"({summary['left_out']} boxes left out by the checks)")
    return 0
