"""Stage 3, labels: import ``labels.path`` (or the source's own labels) into ``paths.labels``."""

from imgpipe.params.base import load
from imgpipe.params.labels import LabelsParams
from imgpipe.params.paths import PathsParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.stage import run_stage


def labels() -> dict:
    """Import the labels; ``paths.labels`` and ``metrics/labels.json`` land together. The summary."""
    from imgpipe.contracts import LABELS_METRICS
    from imgpipe.io import commit_outputs, write_json
    from imgpipe.labels.importer import dvc_metrics, import_labels
    from imgpipe.labels.source import is_url

    paths = load("paths", PathsParams)
    cfg = load("labels", LabelsParams)
    # The download section is read only when it is used, so dvc.yaml can list it only then.
    download_cfg = None
    if is_url(cfg.path.strip()):
        from imgpipe.params.download import DownloadParams

        download_cfg = load("download", DownloadParams)
    with commit_outputs(paths.labels, LABELS_METRICS):
        summary = import_labels(paths.raw, paths.labels, cfg, download_cfg, load("privacy", PrivacyParams))
        write_json(LABELS_METRICS, dvc_metrics(summary.pop("metrics")))
    return summary


def main() -> None:
    run_stage("labels", labels)


if __name__ == "__main__":
    main()
