"""Stage 1, download: fetch ``download.source`` into ``paths.raw`` with its provenance."""

from imgpipe import params
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe.acquire import acquire

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("download", params.DownloadParams)
        info = acquire(cfg, paths.raw)
        summary = {"source": info.source, "kind": info.kind, "layout": info.layout}
        if info.final_url:
            summary["url"] = info.final_url
        if info.size_bytes is not None:
            summary["bytes"] = info.size_bytes
        if info.sha256:
            summary["sha256"] = info.sha256
        summary.update(info.extra.get("summary", {}))
        return summary

    run_stage("download", body)


if __name__ == "__main__":
    main()
