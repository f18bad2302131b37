"""``imgpipe review``: the validate stage's findings as a Label Studio import file.

The review loop: ``dvc repro`` -> ``imgpipe review --label-studio annotations/review.json`` ->
import the file into a Label Studio image-classification project (``--label-config`` writes its
config) -> a person checks each flagged image, whose current label is filled in as an annotation
and whose suggested label (label-issue check) is a prediction with its score -> export the
project as JSON into ``annotations/`` -> set ``labels.path`` to it -> ``dvc repro`` imports the
corrected labels and reruns what depends on them.

Flagged images come first (suspected wrong labels, least self-confident first; then duplicates
and outliers). Every other labelled image follows as an already-annotated task, so the export
carries the whole label set and can replace the source's labels (``--flagged-only`` leaves them out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = {"label_issue": 0, "near_duplicate": 1, "exact_duplicate": 2, "leakage": 3}
ANNOTATOR = "imgpipe-current-label"
MODEL_VERSION = "imgpipe-validate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-studio", required=True, type=Path, metavar="OUT.json",
                        help="write the Label Studio import file (JSON tasks) here")
    parser.add_argument("--label-config", type=Path, metavar="CONFIG.xml",
                        help="also write the labelling config of the project (one Choices over the classes)")
    parser.add_argument("--checks", default="", metavar="A,B",
                        help="only findings of these checks (default: all that are not 'kept')")
    parser.add_argument("--flagged-only", action="store_true",
                        help="only the flagged images, not the whole label set")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (paths.*)")


def build_proposals(review, labels, item_ids, checks: set[str], flagged_only: bool):
    """Label Studio task proposals: flagged findings first, then (unless flagged_only) the rest."""
    from imgpipe.contracts import ITEM_ID, LABEL
    from imgpipe.labelstudio.write import TaskProposal

    label_of = dict(zip(labels[ITEM_ID], labels[LABEL].astype(str), strict=True))
    found = review[review["decision"] != "kept"]
    if checks:
        found = found[found["check"].isin(checks)]
    found = found.assign(_o=found["check"].map(lambda c: ORDER.get(c, 4)))
    found = found.sort_values(["_o", "score", ITEM_ID], kind="stable")
    proposals, seen = [], set()
    for row in found.itertuples(index=False):
        if row.item_id in seen:
            continue
        seen.add(row.item_id)
        suggested = row.suggested_label or None
        proposals.append(TaskProposal(
            image=row.item_id,
            label=suggested,
            score=None if suggested is None else float(row.suggested_score),
            data={"item_id": row.item_id, "source_path": row.source_path, "check": row.check,
                  "decision": row.decision, "group_id": row.group_id, "detail": row.detail},
            annotation=label_of.get(row.item_id),
            annotator=ANNOTATOR,
        ))
    if not flagged_only:
        for item in item_ids:
            if item not in seen and item in label_of:
                proposals.append(TaskProposal(image=item, label=None, data={"item_id": item},
                                              annotation=label_of[item], annotator=ANNOTATOR))
    return proposals


def run(args: argparse.Namespace) -> int:
    from imgpipe import contracts as c
    from imgpipe.errors import PipelineError
    from imgpipe.labelstudio.write import write_label_config, write_tasks
    from imgpipe.params.base import load
    from imgpipe.params.paths import PathsParams

    paths = load("paths", PathsParams, path=args.params)
    try:
        review = c.read_table(paths.validated / c.REVIEW_FILE, "validate")
        labels = c.read_table(paths.labels / c.LABELS_FILE, "labels")
        manifest = c.read_table(paths.preprocessed / c.MANIFEST_FILE, "preprocess", columns=[c.ITEM_ID])
    except FileNotFoundError as exc:
        raise PipelineError(f"{exc.filename}: not found; run `dvc repro validate` first") from None
    checks = {x.strip() for x in args.checks.split(",") if x.strip()}
    proposals = build_proposals(review, labels, manifest[c.ITEM_ID].tolist(), checks, args.flagged_only)
    flagged = sum(1 for p in proposals if p.data.get("check"))
    n = write_tasks(args.label_studio, proposals, MODEL_VERSION)
    if args.label_config:
        write_label_config(args.label_config, c.read_classes(paths.labels))
    print(f"imgpipe review: wrote {n} tasks to {args.label_studio} ({flagged} flagged for review first)")
    return 0
