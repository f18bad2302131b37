"""The ``labels`` section: where labels come from and what to do with each problem."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from imgpipe.params.base import Policy, Section

LabelFormat = Literal[
    "auto",
    "imagefolder",
    "csv",
    "tsv",
    "cifar",
    "idx",
    "label-studio-json",
    "label-studio-json-min",
    "label-studio-csv",
    # labels.task detection (boxes): see imgpipe/labels/boxes
    "voc",
    "coco",
    "yolo",
]


class DetectionParams(Section):
    crops: bool = False  # each box becomes a classification item <image item_id>#box<box_id>
    crop_padding: float = Field(0.1, ge=0, le=2)  # share of the box side added on each side before the crop
    cache_dir: str = ".cache/crops"  # crops already cut, by content (a box edit recuts only that box); "" = off


class LabelsParams(Section):
    task: Literal["classification", "detection"] = "classification"
    path: str = ""
    sha256: str = ""
    format: LabelFormat = "auto"
    file_column: str = "file"
    label_column: str = "label"
    classes: tuple[str, ...] = ()
    on_missing_label: Policy = "quarantine"
    on_unknown_class: Policy = "quarantine"
    on_conflict: Policy = "quarantine"
    on_orphan_label: Literal["drop", "fail"] = "drop"
    on_unreviewed: Policy = "drop"
    # Class names differing only by case or surrounding spaces (cat, Cat): merge into one
    # spelling (reported), or fail.
    on_class_variant: Literal["merge", "fail"] = "merge"
    # How several annotators' labels for one image become one: majority, or dawid-skene (each
    # annotator weighted by the reliability estimated from all their labels).
    vote: Literal["majority", "dawid-skene"] = "majority"
    detection: DetectionParams = DetectionParams()

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_text(cls, value):
        # `classes: [0, 1, 2]` and `-S labels.classes=[0,1]` give ints; class names are text.
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value
