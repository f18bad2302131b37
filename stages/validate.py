"""Stage 4, validate: Great Expectations on manifest + labels, quarantine, train/val/test splits."""

from imgpipe.params.base import load
from imgpipe.params.paths import PathsParams
from imgpipe.params.validate import ValidateParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe import contracts as c
        from imgpipe.clean.run import validate
        from imgpipe.clean.suite import load_suite
        from imgpipe.io import atomic_dir, write_json, write_parquet

        paths = load("paths", PathsParams)
        cfg = load("validate", ValidateParams)
        result = validate(
            manifest=c.read_table(paths.preprocessed / c.MANIFEST_FILE, "preprocess"),
            labels=c.read_table(paths.labels / c.LABELS_FILE, "labels"),
            label_issues=c.read_table(paths.labels / c.LABEL_ISSUES_FILE, "labels"),
            classes=c.read_classes(paths.labels),
            rejects=c.read_table(paths.preprocessed / c.REJECTS_FILE, "preprocess"),
            suite=load_suite(paths.suite),
            cfg=cfg,
            suite_path=str(paths.suite),
        )
        with atomic_dir(paths.validated) as tmp:
            write_parquet(result.dataset, tmp / c.DATASET_FILE)
            write_parquet(result.quarantine, tmp / c.QUARANTINE_FILE)
            write_json(tmp / c.EXPECTATIONS_FILE, {"suite": str(paths.suite), "results": result.expectations})
        write_json(c.DATA_QUALITY_METRICS, result.quality)
        q = result.quality
        return {
            "valid images": q["images_valid"],
            "quarantined": f"{q['images_quarantined']} ({q['quarantine_fraction']:.2%})"
            + (f" {q['quarantine_by_reason']}" if q["quarantine_by_reason"] else ""),
            "rejected by preprocess": q["images_rejected_by_preprocess"],
            "dropped by label policy": q["images_dropped_by_label_policy"],
            "splits": q["splits"],
        }

    run_stage("validate", body)


if __name__ == "__main__":
    main()
