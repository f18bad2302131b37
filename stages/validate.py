"""Stage 4, validate: the Great Expectations gate, the cleaning checks, the review table, splits."""

import os

# Arrow on the C allocator, set before pyarrow loads: with its default (mimalloc), reading the
# tables and the Great Expectations pass over 300,000 rows peaked at 623-648 MiB (4 runs), against
# 520 with the C allocator (jemalloc: 513), and kept ~40 MB more afterwards. A user's setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

from imgpipe.params.base import load  # noqa: E402
from imgpipe.params.paths import PathsParams  # noqa: E402
from imgpipe.params.preprocess import PreprocessParams  # noqa: E402
from imgpipe.params.validate import ValidateParams  # noqa: E402
from imgpipe.stage import run_stage  # noqa: E402

BOXES_FILE = "boxes.parquet"  # under paths.labels when the labels carry boxes; read by box checks


def validate() -> dict:
    import shutil

    from imgpipe import contracts as c
    from imgpipe.errors import ValidationFailed
    from imgpipe.io import atomic_dir, commit_outputs, write_json, write_parquet
    from imgpipe.preprocess.shards import open_shard
    from imgpipe.validate.chunked import ShardPixels
    from imgpipe.validate.sheets import draw_sheets, write_report
    from imgpipe.validate.suite import load_suite
    from imgpipe.validate.validation import GateReport, validate_dataset

    paths = load("paths", PathsParams)
    from imgpipe.params.download import DownloadParams
    from imgpipe.validate.crop_duplicates import resolve_max_crop

    # near_duplicates.max_crop auto: the crop pass for photographs, not for handwriting
    cfg = resolve_max_crop(load("validate", ValidateParams), load("download", DownloadParams).source)
    pre = load("preprocess", PreprocessParams)
    configured = {"height": pre.size[0], "width": pre.size[1], "channels": pre.channels}
    manifest = c.read_table(paths.preprocessed / c.MANIFEST_FILE, "preprocess")
    stored = dict(configured)
    if len(manifest):  # what the shards hold, which the suite checks against the params
        shape = open_shard(paths.preprocessed, int(manifest[c.SHARD].iloc[0])).shape
        stored = {"height": int(shape[1]), "width": int(shape[2]), "channels": int(shape[3])}
    labels = c.read_table(paths.labels / c.LABELS_FILE, "labels")
    classes = c.read_classes(paths.labels)
    tables = {}
    if (paths.labels / BOXES_FILE).exists():
        tables["boxes"] = c.read_table(paths.labels / BOXES_FILE, "labels")
    from imgpipe.validate.checks.faces import load_faces_table  # privacy: faces found at download

    if (faces := load_faces_table(paths.raw)) is not None:
        tables["faces"] = faces

    load_pixels = ShardPixels(paths.preprocessed)  # a chunk at a time, here or on the engine

    report = GateReport()
    failed_dir = c.VALIDATE_FAILED_DIR
    # Handed over, not kept: validate_dataset joins the two and frees them (0.4 GB at a million
    # images); the captions below read the two columns they need again.
    handed = {"manifest": manifest, "labels": labels}
    del manifest, labels
    try:
        result = validate_dataset(
            manifest=handed.pop("manifest"), labels=handed.pop("labels"),
            label_issues=c.read_table(paths.labels / c.LABEL_ISSUES_FILE, "labels"),
            classes=classes,
            rejects=c.read_table(paths.preprocessed / c.REJECTS_FILE, "preprocess"),
            suite=load_suite(paths.suite), cfg=cfg, suite_path=str(paths.suite),
            load_pixels=load_pixels, image_spec=stored, configured=configured, report=report, tables=tables,
        )
    except ValidationFailed as exc:
        # DVC removed the outputs before the run: leave the evidence where a person looks.
        shutil.rmtree(failed_dir, ignore_errors=True)
        failed_dir.mkdir(parents=True)
        offending = report.offending
        if offending is not None:
            offending.to_csv(failed_dir / "offending.csv", index=False)
        write_json(failed_dir / "expectations.json", {"suite": str(paths.suite), "results": report.expectations})
        write_report(failed_dir / "report.html", "validate: FAILED", report.quality, report.expectations,
                     None, [], error=str(exc), offending=offending)
        raise ValidationFailed(f"{exc} (report and offending rows: {failed_dir}/report.html, "
                               f"{failed_dir}/offending.csv)") from None
    shutil.rmtree(failed_dir, ignore_errors=True)
    # The dataset, the report and the metrics land together, or none of them changes.
    with commit_outputs(paths.validated, c.VALIDATE_REPORT_DIR, c.DATA_QUALITY_METRICS):
        with atomic_dir(paths.validated) as tmp:
            write_parquet(result.dataset, tmp / c.DATASET_FILE)
            write_parquet(result.quarantine, tmp / c.QUARANTINE_FILE)
            write_parquet(result.review, tmp / c.REVIEW_FILE)
            write_json(tmp / c.EXPECTATIONS_FILE, {"suite": str(paths.suite), "results": result.expectations})
            write_json(tmp / c.QUALITY_DETAIL_FILE, result.detail)
        # Captions of the images the sheets may show: the reviewed ones (not a dict of every image).
        ids = c.read_table(paths.preprocessed / c.MANIFEST_FILE, "preprocess", columns=[c.ITEM_ID])[c.ITEM_ID]
        shown = ids[ids.isin(result.review[c.ITEM_ID])]
        labels = c.read_table(paths.labels / c.LABELS_FILE, "labels", columns=[c.ITEM_ID, c.LABEL])
        known = labels[labels[c.ITEM_ID].isin(shown)]
        label_of = dict(zip(shown, shown.map(
            dict(zip(known[c.ITEM_ID], known[c.LABEL].astype(str), strict=True))).fillna("?"), strict=True))
        with atomic_dir(c.VALIDATE_REPORT_DIR) as tmp:
            sheets = draw_sheets(result.review, result.pixels, result.pixel_index, label_of, tmp / "sheets",
                                 boxes=tables.get("boxes"))
            write_report(tmp / "report.html", "validate: data quality report", result.quality,
                         result.expectations, result.review, sheets)
        write_json(c.DATA_QUALITY_METRICS, result.quality)
    return summary(result, str(paths.validated / c.REVIEW_FILE), str(c.VALIDATE_REPORT_DIR))


SHOWN = {"images_valid", "images_quarantined", "quarantine_fraction", "images_rejected_by_preprocess",
         "reject_fraction", "images_dropped_by_label_policy", "exact_duplicate_groups", "near_duplicate_groups",
         "leakage_removed", "outliers", "label_issues", "images_dropped_by_cleaning", "images_flagged", "train",
         "val", "test", "images_decoded", "expectations_failed"}


def summary(result, review_file: str, report_dir: str) -> dict:
    """The stage's log block; a check that was off says so instead of counting 0."""
    q = result.quality

    def count(key: str):
        return q.get(key, "off")

    return {
        "valid images": q["images_valid"],
        "quarantined": f"{q['images_quarantined']} ({q['quarantine_fraction']:.2%})"
        + (f" {result.detail['quarantine_by_reason']}" if result.detail["quarantine_by_reason"] else ""),
        "rejected by preprocess": f"{q['images_rejected_by_preprocess']} ({q['reject_fraction']:.2%})",
        "dropped by label policy": q["images_dropped_by_label_policy"],
        "duplicates": f"{count('exact_duplicate_groups')} exact groups, {count('near_duplicate_groups')} near groups, "
                      f"{count('leakage_removed')} removed for leakage",
        "outliers": count("outliers"), "suspected label errors": count("label_issues"),
        # plug-in checks (ood, box_*, face, ...): their own counters, as they name them
        **{key.replace("_", " "): value for key, value in sorted(q.items()) if key not in SHOWN},
        "dropped by cleaning": q["images_dropped_by_cleaning"], "flagged": q["images_flagged"],
        "splits": {"train": q["train"], "val": q["val"], "test": q["test"]},
        "review": f"{review_file}, {report_dir}/report.html",
    }


def main() -> None:
    run_stage("validate", validate)


if __name__ == "__main__":
    main()
