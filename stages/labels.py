"""Stage 3, labels: import ``labels.path`` (or the source's own labels) into ``paths.labels``."""

from pathlib import Path

from imgpipe import params
from imgpipe.stage import run_stage

METRICS_FILE = Path("metrics/labels.json")


def main() -> None:
    def body() -> dict:
        from imgpipe.io import write_json
        from imgpipe.labels import dvc_metrics, run
        from imgpipe.labels.source import is_url

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("labels", params.LabelsParams)
        # The download section is read only when it is used, so dvc.yaml can list it only then.
        download_cfg = params.load("download", params.DownloadParams) if is_url(cfg.path.strip()) else None
        summary = run(paths.raw, paths.labels, cfg, download_cfg)
        write_json(METRICS_FILE, dvc_metrics(summary.pop("metrics")))
        return summary

    run_stage("labels", body)


if __name__ == "__main__":
    main()
