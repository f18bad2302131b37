"""Stage 3, labels: import ``labels.path`` (or the source's own labels) into ``paths.labels``."""

from imgpipe.params.base import load
from imgpipe.params.labels import LabelsParams
from imgpipe.params.paths import PathsParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe.contracts import LABELS_METRICS
        from imgpipe.io import write_json
        from imgpipe.labels.importer import dvc_metrics, import_labels
        from imgpipe.labels.source import is_url

        paths = load("paths", PathsParams)
        cfg = load("labels", LabelsParams)
        # The download section is read only when it is used, so dvc.yaml can list it only then.
        download_cfg = None
        if is_url(cfg.path.strip()):
            from imgpipe.params.download import DownloadParams

            download_cfg = load("download", DownloadParams)
        privacy = load("privacy", PrivacyParams)
        summary = import_labels(paths.raw, paths.labels, cfg, download_cfg, privacy)
        write_json(LABELS_METRICS, dvc_metrics(summary.pop("metrics")))
        return summary

    run_stage("labels", body)


if __name__ == "__main__":
    main()
