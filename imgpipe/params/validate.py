"""The ``validate`` section: quarantine limits, split fractions, and each cleaning check's
threshold and policy.

Policies: ``flag`` keeps the image in the dataset and lists it in the review table; ``drop``
removes it (duplicates: all but one per group); ``quarantine`` removes it into
``quarantine.parquet`` and counts toward ``max_quarantine_fraction``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from imgpipe.params.base import EngineParams, Section

FlagOrDrop = Literal["flag", "drop"]
CheckPolicy = Literal["flag", "drop", "quarantine"]


class ExactDuplicateParams(Section):
    on_duplicate: FlagOrDrop = "drop"  # identical pixels, same label: keep the first, drop the rest
    on_conflict: Literal["quarantine", "flag"] = "quarantine"  # identical pixels, different labels


class NearDuplicateParams(Section):
    enabled: bool = True
    threshold: float = Field(0.98, gt=0, le=1)  # cosine similarity of the aligned embeddings
    max_shift: int = Field(2, ge=0, le=8)  # pixels a copy may be shifted by
    tables: int = Field(12, ge=1, le=64)  # LSH tables (recall up, time up)
    bits: int = Field(24, ge=4, le=63)  # sign bits per table (fewer candidates, recall down)
    # second pass (crop/rescale/colour): share cut per side; 0 = off; auto = 0.2 for photo sources,
    # off for handwriting (look-alike strokes pass for crops of each other)
    max_crop: float | Literal["auto"] = "auto"
    crop_threshold: float = Field(0.96, gt=0, le=1)  # its similarity over the best-aligned crop window
    on_duplicate: FlagOrDrop = "flag"  # same label: flag the group, or keep one and drop the rest
    on_conflict: CheckPolicy = "flag"  # group members with different labels


class OutlierParams(Section):
    on_outlier: CheckPolicy = "flag"
    dark_max_p95: float = Field(32.0, ge=0, le=255)  # 95th brightness percentile below this
    overexposed_min_p05: float = Field(240.0, ge=0, le=255)  # 5th brightness percentile above this
    constant_max_std: float = Field(4.0, ge=0)  # largest channel std below this
    blur_min: float = Field(30.0, ge=0)  # Laplacian variance below this (at the model size)
    min_side: int = Field(8, ge=1)  # shorter original side below this
    max_aspect: float = Field(4.0, ge=1)  # original aspect ratio above this


class LabelIssueParams(Section):
    enabled: bool = True
    folds: int = Field(5, ge=2, le=20)  # K of the K-fold out-of-sample probabilities
    max_flag_fraction: float = Field(0.03, ge=0, le=1)  # review budget: at most this share is flagged
    on_issue: CheckPolicy = "flag"
    seed: int = Field(0, ge=0)


class BoxCheckParams(Section):
    """labels.task detection: the box checks (imgpipe/validate/checks/boxes.py); off without boxes."""

    enabled: bool = True
    on_empty: CheckPolicy = "drop"  # box_empty: zero or negative width or height
    on_outside: CheckPolicy = "flag"  # box_outside: partly or wholly outside the image (kept boxes are clipped)
    min_side: float = Field(2.0, ge=0)  # box_tiny: a side under this many original pixels
    on_tiny: CheckPolicy = "flag"
    max_aspect: float = Field(10.0, ge=1)  # box_aspect: longer side over shorter side above this
    on_aspect: CheckPolicy = "flag"
    duplicate_iou: float = Field(0.9, gt=0, le=1)  # box_duplicate: same class, IoU above this: keep one
    on_duplicate: FlagOrDrop = "drop"
    conflict_iou: float = Field(0.8, gt=0, le=1)  # box_conflict: different classes over one object
    on_conflict: CheckPolicy = "flag"
    max_boxes: int = Field(100, ge=1)  # box_count: an image with more boxes than this, or with none
    on_count: CheckPolicy = "flag"
    min_class_boxes: int = Field(1, ge=0)  # box_count: fewer boxes of a frozen class fails the stage (GX)


class OodParams(Section):
    """Images that belong to no class (:mod:`imgpipe.validate.checks.ood`)."""

    enabled: bool = True
    on_ood: CheckPolicy = "flag"
    max_flag_fraction: float = Field(0.01, ge=0, le=1)  # review budget: at most this share is flagged
    max_p_value: float = Field(0.001, gt=0, lt=1)  # suspect beyond this chi-square tail of the bulk
    grid: int = Field(8, ge=1, le=64)  # pixels mean-pooled on a grid x grid raster
    components: int = Field(16, ge=1, le=256)  # principal axes the distance is measured on
    support_fraction: float = Field(0.9, gt=0.5, le=1)  # share of images the robust fit trusts
    fit_sample: int = Field(10_000, ge=100)  # the robust fit sees at most this many images (seeded sample)
    min_images: int = Field(50, ge=3)  # fewer images: no robust fit, no findings
    seed: int = Field(0, ge=0)


class ValidateParams(Section, EngineParams):  # + engine, dask_address, dask_workers: per-chunk pixel work (docs/cleaning.md)
    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)
    max_reject_fraction: float = Field(0.05, ge=0, le=1)  # undecodable files (preprocess rejects)
    min_class_count: int = Field(1, ge=0)  # fewer images of any frozen class fails the stage
    max_class_share: float = Field(1.0, gt=0, le=1)  # one class above this share fails the stage
    val_fraction: float = Field(0.05, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = Field(2024, ge=0)
    exact_duplicates: ExactDuplicateParams = ExactDuplicateParams()
    near_duplicates: NearDuplicateParams = NearDuplicateParams()
    outliers: OutlierParams = OutlierParams()
    label_issues: LabelIssueParams = LabelIssueParams()
    boxes: BoxCheckParams = BoxCheckParams()


    ood: OodParams = OodParams()
