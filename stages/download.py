"""Stage 1, download: fetch ``download.source`` into ``paths.raw`` with its provenance."""

from imgpipe.params.base import load
from imgpipe.params.download import DownloadParams
from imgpipe.params.paths import PathsParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.stage import run_stage


def download() -> dict:
    """Fetch the source into ``paths.raw`` (one output, renamed in when complete); the summary."""
    from imgpipe.download.acquire import acquire
    from imgpipe.io import commit_outputs

    paths = load("paths", PathsParams)
    cfg = load("download", DownloadParams)
    with commit_outputs(paths.raw):
        info = acquire(cfg, paths.raw, privacy=load("privacy", PrivacyParams))
    summary = {"source": info.source, "kind": info.kind, "layout": info.layout}
    if info.final_url:
        summary["url"] = info.final_url
    if info.size_bytes is not None:
        summary["bytes"] = info.size_bytes
    if info.sha256:
        summary["sha256"] = info.sha256
    summary.update(info.extra.get("summary", {}))
    return summary


def main() -> None:
    run_stage("download", download)


if __name__ == "__main__":
    main()
