"""The one writer of Label Studio import files: tasks with the model's (or a check's) label as a
prediction, and the matching labelling config.

Used by the review export of the validate stage (suspected wrong labels, near duplicates) and by
``imgpipe predict --label-studio`` (semi-automatic labelling). A task's ``data.image`` is the
image reference the labels stage matches back to the item when the corrected export returns
through ``labels.path`` (by path, path suffix or file name; see ``imgpipe.labels.match``).
Predictions are never ground truth: an export in which a person did not annotate a task comes
back as ``unreviewed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

from imgpipe.io import atomic_file, dumps_json

CHOICES_NAME = "choice"  # from_name: the name in Label Studio's image classification template
IMAGE_NAME = "image"  # to_name, and the data key holding the image reference


@dataclass(frozen=True)
class TaskProposal:
    """One image to review, with the label proposed for it and how sure the proposer is."""

    image: str  # what Label Studio shows and the labels stage matches: a URL or a path
    label: str | None  # proposed class; None = no prediction, just a task
    score: float | None = None  # the proposer's confidence in ``label``, 0..1
    data: dict = field(default_factory=dict)  # extra task data shown to the annotator (item_id, ...)
    annotation: str | None = None  # a label already given (a person edits it; exports return it)
    # Label Studio's completed_by: the email of one of its users, or "" for none (the importing
    # user gets it); any other value makes Label Studio reject the whole import.
    annotator: str = ""


def tasks(proposals: Iterable[TaskProposal], model_version: str) -> list[dict]:
    """Label Studio tasks in the given order; ids are 1-based positions, so output is stable."""
    out = []
    for i, p in enumerate(proposals, 1):
        task: dict = {"id": i, "data": {IMAGE_NAME: p.image, **{k: v for k, v in p.data.items() if k != IMAGE_NAME}}}
        if p.label is not None:
            prediction: dict = {
                "model_version": model_version,
                "result": [{
                    "id": f"p{i}",
                    "from_name": CHOICES_NAME,
                    "to_name": IMAGE_NAME,
                    "type": "choices",
                    "value": {"choices": [p.label]},
                }],
            }
            if p.score is not None:
                prediction["score"] = round(float(p.score), 6)
            task["predictions"] = [prediction]
        if p.annotation is not None:
            annotation: dict = {
                "id": i,
                "was_cancelled": False,
                "ground_truth": False,
                "result": [{
                    "id": f"a{i}",
                    "from_name": CHOICES_NAME,
                    "to_name": IMAGE_NAME,
                    "type": "choices",
                    "value": {"choices": [p.annotation]},
                }],
            }
            if p.annotator:
                annotation["completed_by"] = p.annotator
            task["annotations"] = [annotation]
        out.append(task)
    return out


def write_tasks(path: Path | str, proposals: Iterable[TaskProposal], model_version: str) -> int:
    """Write the import file atomically; returns the number of tasks."""
    rows = tasks(proposals, model_version)
    with atomic_file(path) as tmp:
        tmp.write_text(dumps_json(rows))
    return len(rows)


def label_config(classes: Sequence[str]) -> str:
    """The labelling config (XML) of a single-choice classification project over ``classes``."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
        f'  <Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def write_label_config(path: Path | str, classes: Sequence[str]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(label_config(classes))
