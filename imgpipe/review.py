"""``imgpipe review``: the validate stage's findings, and the evaluate stage's suspected
test-label errors, as a Label Studio import file.

The review loop: ``dvc repro`` -> ``imgpipe review --label-studio annotations/review.json
--images annotations/review-images --image-prefix '/data/local-files/?d=review-images/'`` ->
import the file into a Label Studio image-classification project (``--label-config`` writes its
config; mount ``annotations/`` as local-files storage) -> a person checks each flagged image,
whose current label is filled in as an annotation and whose suggested label (label checks) is a
prediction with its score -> export the project as JSON into ``annotations/`` -> set
``labels.path`` to it -> ``dvc repro`` imports the corrected labels and reruns what depends on them.

Flagged images come first: the trained network's suspected test-label errors
(``metrics/eval/label_errors.csv``, when the evaluate stage has run) and the cross-validated
network's suspected training-label errors (``metrics/crossval/label_errors.csv``, when the crossval
stage ran enabled), then the validate stage's
suspected wrong labels (least self-confident first), duplicates and outliers. Each flagged task
says where its finding came from (``source``: ``validate``, ``evaluate`` or ``crossval``; joined
with ``+`` when several found it). Every other labelled image follows as an already-annotated task, so the export
carries the whole label set and can replace the source's labels (``--flagged-only`` leaves them out).

The current label is an annotation without ``completed_by``: Label Studio assigns it to the
user who imports (it rejects an annotator that is not one of its users).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

ORDER = {"test_label_error": -1, "train_label_error": -1, "label_issue": 0, "near_duplicate": 1, "exact_duplicate": 2, "leakage": 3}
MODEL_VERSION = "imgpipe-validate"
SOURCE = "source"  # review column / task data key: which stage found it (validate | evaluate | crossval)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-studio", required=True, type=Path, metavar="OUT.json",
                        help="write the Label Studio import file (JSON tasks) here")
    parser.add_argument("--label-config", type=Path, metavar="CONFIG.xml",
                        help="also write the labelling config of the project (one Choices over the classes)")
    parser.add_argument("--checks", default="", metavar="A,B",
                        help="only findings of these checks (default: all that are not 'kept')")
    parser.add_argument("--flagged-only", action="store_true",
                        help="only the flagged images, not the whole label set")
    parser.add_argument("--images", type=Path, metavar="DIR",
                        help="write each task's image under DIR (to mount as Label Studio local-files "
                        "storage); the task's image becomes PREFIX + its path under DIR")
    parser.add_argument("--image-prefix", default="",
                        help="prepended to each task's image path, e.g. '/data/local-files/?d=review-images/' "
                        "for Label Studio local storage")
    parser.add_argument("--eval-errors", type=Path, default=None, metavar="CSV",
                        help="the evaluate stage's suspected test-label errors to merge (default "
                        "metrics/eval/label_errors.csv when it exists)")
    parser.add_argument("--crossval-errors", type=Path, default=None, metavar="CSV",
                        help="the crossval stage's suspected training-label errors to merge (default "
                        "metrics/crossval/label_errors.csv when it exists)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (paths.*)")


def build_proposals(review, labels, item_ids, checks: set[str], flagged_only: bool):
    """Label Studio task proposals: flagged findings first, then (unless flagged_only) the rest."""
    from imgpipe.contracts import ITEM_ID, LABEL
    from imgpipe.labelstudio.write import TaskProposal

    label_of = dict(zip(labels[ITEM_ID], labels[LABEL].astype(str), strict=True))
    found = review[review["decision"] != "kept"]
    if checks:
        found = found[found["check"].isin(checks)]
    # An image both stages flag says so (source "evaluate+validate"); its first finding leads.
    sources = {} if SOURCE not in found else {
        item: "+".join(sorted(set(group))) for item, group in found.groupby(ITEM_ID)[SOURCE]}
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
                  "decision": row.decision, "group_id": row.group_id, "detail": row.detail,
                  SOURCE: sources.get(row.item_id, "validate")},
            annotation=label_of.get(row.item_id),
        ))
    if not flagged_only:
        for item in item_ids:
            if item not in seen and item in label_of:
                proposals.append(TaskProposal(image=item, label=None, data={"item_id": item},
                                              annotation=label_of[item]))
    return proposals


def merge_findings(review, evaluate_rows, crossval_rows=None):
    """The validate findings, the evaluate stage's and the crossval stage's, each row marked with
    its ``source``."""
    import pandas as pd

    parts = [review.assign(**{SOURCE: "validate"})]
    if evaluate_rows is not None and len(evaluate_rows):
        parts.append(evaluate_rows.assign(**{SOURCE: "evaluate"}))
    if crossval_rows is not None and len(crossval_rows):
        parts.append(crossval_rows.assign(**{SOURCE: "crossval"}))
    return pd.concat(parts, ignore_index=True)


def run(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from imgpipe import contracts as c
    from imgpipe.errors import PipelineError
    from imgpipe.evaluate.label_errors import review_rows
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
    from imgpipe.export.boxes_review import write_box_review

    # Detection labels: image tasks with every box drawn (None: the labels carry no boxes).
    boxes_written = write_box_review(paths.labels, review, args.label_studio, args.label_config,
                                     args.flagged_only, image_prefix=args.image_prefix)
    if boxes_written is not None:
        print(f"imgpipe review: wrote {boxes_written} box tasks to {args.label_studio}")
        return 0
    errors_csv = args.eval_errors or c.LABEL_ERRORS_FILE
    evaluate_rows = None
    if errors_csv.is_file():
        evaluate_rows = review_rows(_read_label_errors(errors_csv))
    elif args.eval_errors:
        raise PipelineError(f"{errors_csv}: not found; run `dvc repro evaluate` first")
    from imgpipe.crossval import crossval_review_rows

    crossval_rows = crossval_review_rows(args.crossval_errors)
    checks = {x.strip() for x in args.checks.split(",") if x.strip()}
    proposals = build_proposals(merge_findings(review, evaluate_rows, crossval_rows), labels, manifest[c.ITEM_ID].tolist(),
                                checks, args.flagged_only)
    if args.images:
        from imgpipe.labelstudio.images import export_images

        names = export_images(paths.raw, [p.image for p in proposals], args.images)
        # Quoted: an array item's "#" would otherwise end the URL.
        proposals = [replace(p, image=args.image_prefix + quote(names[p.image], safe="/")) for p in proposals]
    elif args.image_prefix:
        proposals = [replace(p, image=args.image_prefix + quote(p.image, safe="/")) for p in proposals]
    flagged = sum(1 for p in proposals if p.data.get("check"))
    from_eval = sum(1 for p in proposals if "evaluate" in p.data.get(SOURCE, ""))
    from_cv = sum(1 for p in proposals if "crossval" in p.data.get(SOURCE, ""))
    n = write_tasks(args.label_studio, proposals, MODEL_VERSION)
    if args.label_config:
        write_label_config(args.label_config, c.read_classes(paths.labels))
    where = f"; images in {args.images}" if args.images else ""
    print(f"imgpipe review: wrote {n} tasks to {args.label_studio} ({flagged} flagged for review first, "
          f"{from_eval} of them by the trained network, {from_cv} by the cross-validated network){where}")
    return 0


def _read_label_errors(path: Path):
    import pandas as pd

    from imgpipe.errors import PipelineError

    try:
        return pd.read_csv(path, dtype={"item_id": str, "source_path": str, "label": str, "suggested_label": str},
                           keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PipelineError(f"{path}: not a label-error list written by the evaluate stage: {exc}") from None
