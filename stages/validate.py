"""Stage 4, validate: Great Expectations on manifest + labels, quarantine, train/val/test splits."""

import json

from imgpipe import params
from imgpipe.stage import run_stage

QUALITY_METRICS = "metrics/data_quality.json"


def main() -> None:
    def body() -> dict:
        from imgpipe.io import atomic_dir, read_parquet, write_json, write_parquet
        from imgpipe.validate import load_suite, validate

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("validate", params.ValidateParams)
        classes = json.loads((paths.labels / "classes.json").read_text())["classes"]
        result = validate(
            manifest=read_parquet(paths.preprocessed / "manifest.parquet"),
            labels=read_parquet(paths.labels / "labels.parquet"),
            label_issues=read_parquet(paths.labels / "issues.parquet"),
            classes=classes,
            rejects=read_parquet(paths.preprocessed / "rejects.parquet"),
            suite=load_suite(paths.suite),
            cfg=cfg,
        )
        with atomic_dir(paths.validated) as tmp:
            write_parquet(result.dataset, tmp / "dataset.parquet")
            write_parquet(result.quarantine, tmp / "quarantine.parquet")
            write_json(tmp / "expectations.json", {"suite": str(paths.suite), "results": result.expectations})
        write_json(QUALITY_METRICS, result.quality)
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
