"""The ``imgpipe`` console script: tools a person runs beside the DVC pipeline.

Each subcommand lives in its own module and is imported only when it runs, so ``imgpipe --help``
is instant and no subcommand's imports (torch, GX, ...) weigh on another. A subcommand module
provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("imgpipe.predict", "run the trained model on images: a CSV of labels and probabilities, "
                "or Label Studio tasks pre-annotated most-uncertain first"),
    "review": ("imgpipe.review", "export the validate stage's findings and the network's suspected "
               "test-label errors as Label Studio tasks"),
    "export": ("imgpipe.export", "write the validated dataset as imagefolder, hf (datasets parquet) or "
               "webdataset, or its boxes as voc, coco, yolo or label-studio"),
    "diff": ("imgpipe.diff", "what changed between two versions: images, labels, splits, classes, findings, "
             "model metrics and flipped predictions"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imgpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = (argv if argv is not None else sys.argv[1:])[:1]
    for name, (module, summary) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=summary, description=summary)
        if wanted == [name]:  # import only the subcommand that runs
            importlib.import_module(module).add_arguments(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from imgpipe.errors import PipelineError
    from imgpipe.stage import setup_logging

    setup_logging()
    try:
        return importlib.import_module(SUBCOMMANDS[args.command][0]).run(args)
    except PipelineError as exc:
        print(f"imgpipe {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
