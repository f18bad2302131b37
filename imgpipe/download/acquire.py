"""Acquisition: turn ``download.source`` into ``<raw>/files`` plus ``<raw>/source.json``.

Sources:
- ``digits``: built in, offline (scikit-learn's 8x8 digits written as PNG files + labels.csv).
- ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``: official URLs and checksums
  (:mod:`imgpipe.download.official`).
- an ``http(s)://`` or ``s3://`` URL, or a local path, to an archive or a folder
  (:mod:`imgpipe.download.generic`).

Everything is built inside :func:`imgpipe.io.atomic_dir`, so a failure leaves the previous output
(or nothing) in place, never a partial one. ``source.json`` holds no timestamps and no
machine-specific paths, so the same source gives the same bytes on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from imgpipe.download.builtin import write_digits
from imgpipe.download.crawl_list import is_url_list
from imgpipe.download.fetch import BACKOFF_S, FetchResult, fetch_to_file, redact
from imgpipe.download.hf_parquet import is_hf_parquet
from imgpipe.download.official import OFFICIAL_DATASETS, OfficialDataset, OfficialFile
from imgpipe.errors import SourceError
from imgpipe.io import atomic_dir, write_json
from imgpipe.params.download import DownloadParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.privacy.raw import protecting
from imgpipe.rawdata import FILES_DIR, SOURCE_FILE, SourceInfo, pack_images

BUILTIN_SOURCES = ("digits",)

__all__ = ["BUILTIN_SOURCES", "OFFICIAL_DATASETS", "FetchResult", "OfficialDataset", "OfficialFile",
           "acquire", "fetch_to_file"]


def acquire(cfg: DownloadParams, out_dir: Path, *, datasets: Mapping[str, OfficialDataset] | None = None,
            backoff_s: float = BACKOFF_S, privacy: PrivacyParams | None = None) -> SourceInfo:
    """Fetch ``cfg.source`` into ``out_dir`` atomically and return its provenance.

    ``datasets`` replaces the official registry (tests and offline mirrors point it at other
    URLs and checksums); ``backoff_s`` is the first retry delay, doubled per failed attempt.
    """
    source = cfg.source.strip()
    if not source:
        raise SourceError("download.source is empty")
    registry = OFFICIAL_DATASETS if datasets is None else datasets
    try:
        return _acquire(source, cfg, Path(out_dir), registry, backoff_s, privacy)
    except OSError as exc:  # disk full, permissions, ...: still one line naming the source
        where = f" ({exc.filename})" if exc.filename else ""
        raise SourceError(f"{redact(source)}: {exc.strerror or exc}{where}") from None


def _acquire(source: str, cfg: DownloadParams, out_dir: Path, registry: Mapping[str, OfficialDataset],
             backoff_s: float, privacy: PrivacyParams | None = None) -> SourceInfo:
    with atomic_dir(out_dir) as tmp, protecting(privacy) as guard:  # take-downs, metadata: before packing
        if source == "digits":
            facts = write_digits(tmp / FILES_DIR)
            info = SourceInfo(
                source=source,
                kind="builtin",
                layout="files",
                classes=facts["classes"],
                label_file=facts["label_file"],
                extra={"images": facts["count"], "origin": "sklearn.datasets.load_digits"},
            )
        elif source in registry:
            from imgpipe.download.official import acquire_official

            info = acquire_official(registry[source], cfg, tmp, backoff_s)
        elif is_hf_parquet(source):  # before URL lists: a local .parquet of images, or hf:<where>
            from imgpipe.download.hf_parquet import acquire_hf_parquet

            info = acquire_hf_parquet(source, cfg, tmp, backoff_s)
        elif is_url_list(source):
            from imgpipe.download.crawl import acquire_crawl

            info = acquire_crawl(source, cfg, tmp, backoff_s)
        elif "://" in source or "/" in source or "\\" in source or Path(source).suffix or Path(source).exists():
            from imgpipe.download.generic import acquire_generic

            info = acquire_generic(source, cfg, tmp, backoff_s)
        else:
            known = ", ".join([*BUILTIN_SOURCES, *registry])
            raise SourceError(f"unknown source {source!r}: expected one of {known}, a URL or a path")
        if info.layout == "files" and "packed" not in info.extra:
            packed = pack_images(tmp, info.label_file)
            info = replace(info, extra={**info.extra, "packed": packed})
        if guard is not None:
            info = guard.record(tmp, info)
        write_json(tmp / SOURCE_FILE, info.to_json())
    return info
