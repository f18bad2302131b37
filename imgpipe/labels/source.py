"""Where the labels come from and in which format: ``labels.path`` / ``labels.format`` and the source.

With ``labels.path`` empty, ``auto`` looks, in order, at: the label arrays of an official layout
(CIFAR, IDX); the label file ``source.json`` names; the only ``.csv``/``.tsv``/``.json`` at the top
of ``files/``; and otherwise the folder names (ImageFolder). A file's format is told from its
content. ``labels.path`` may be a local path or an http(s)/s3 URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imgpipe.errors import LabelError
from imgpipe.labels.formats import detect_format
from imgpipe.params.download import DownloadParams
from imgpipe.params.labels import LabelsParams
from imgpipe.rawdata import FILES_DIR, SourceInfo, is_array_layout, list_payload_files

LABEL_FILE_SUFFIXES = {".csv", ".tsv", ".json"}
URL_SCHEMES = ("http://", "https://", "s3://")


@dataclass(frozen=True)
class LabelSource:
    format: str  # a concrete format, never "auto"
    path: Path | None  # the local file to read; None for folder names and a layout's label arrays
    name: str  # how messages name it: the path or URL as given, or the file under <raw>/files/
    label_source: str  # the label_source column: no machine-specific paths, so outputs stay identical
    reason: str  # why this source and format, for the log and the metrics
    auto: bool  # the format was detected


def is_url(text: str) -> bool:
    return text.lower().startswith(URL_SCHEMES)


def fetch_label_file(url: str, dest_dir: Path, download_cfg: DownloadParams | None,
                     expected_sha256: str | None = None) -> Path:
    """Download ``url`` into ``dest_dir`` with the pipeline's fetcher (retries, S3 endpoint)."""
    try:
        from imgpipe.download.fetch import fetch_to_file
    except ImportError:
        raise LabelError(f"{url}: labels.path is a URL, but this build has no URL fetcher "
                         "(imgpipe.download.fetch); download the file and give its local path") from None
    name = PurePosixPath(url.split("?")[0].rstrip("/")).name or "labels"
    dest = dest_dir / name
    fetch_to_file(url, dest, download_cfg or DownloadParams(), expected_sha256=expected_sha256 or None)
    return dest


def _imagefolder(reason: str, auto: bool) -> LabelSource:
    return LabelSource("imagefolder", None, "folder names", "imagefolder", reason, auto)


def _from_file(local: Path, name: str, label_source_name: str, fmt: str, why: str) -> LabelSource:
    if local.is_dir():
        raise LabelError(f"{name}: is a folder, expected a label file (leave labels.path empty and set "
                         "labels.format to imagefolder to take classes from folder names)")
    if not local.exists():
        raise LabelError(f"{name}: label file not found")
    auto = fmt == "auto"
    if auto:
        fmt = detect_format(local, name)
        why = f"{why}; format detected from its content"
    return LabelSource(fmt, local, name, f"{fmt}:{label_source_name}", why, auto)


def choose_source(
    raw_dir: Path,
    info: SourceInfo,
    cfg: LabelsParams,
    fetch_dir: Path,
    download_cfg: DownloadParams | None = None,
) -> LabelSource:
    """Resolve ``labels.path`` and ``labels.format`` against what the source provides."""
    fmt = cfg.format
    path_text = cfg.path.strip()
    if path_text:
        if fmt == "imagefolder":
            raise LabelError(f"labels.format is imagefolder (classes from folder names) but labels.path is "
                             f"set to {path_text}: clear one of them")
        if is_url(path_text):
            local = fetch_label_file(path_text, fetch_dir, download_cfg, cfg.sha256.strip())
            return _from_file(local, path_text, path_text, fmt, "labels.path (URL)")
        return _from_file(Path(path_text), path_text, path_text, fmt, "labels.path")

    if is_array_layout(info.layout):
        wanted = "idx" if info.layout == "idx" else "cifar"
        if fmt not in ("auto", wanted):
            raise LabelError(
                f"labels.format is {fmt}, but the {info.source} source (layout {info.layout}) keeps its labels in "
                f"{wanted} files: set labels.format to auto or {wanted}, or point labels.path at a label file"
            )
        return LabelSource(wanted, None, f"the {info.source} label arrays", wanted,
                           f"the label arrays of the {info.layout} layout", fmt == "auto")
    if fmt == "imagefolder":
        return _imagefolder("labels.format", auto=False)

    files_dir = Path(raw_dir) / FILES_DIR
    candidate, why = None, ""
    if info.label_file:
        candidate, why = info.label_file, "the label file source.json names"
    else:
        top = [f for f in list_payload_files(files_dir)
               if "/" not in f and PurePosixPath(f).suffix.lower() in LABEL_FILE_SUFFIXES]
        if len(top) == 1:
            candidate, why = top[0], "the only label file at the top of the source"
    if candidate is None:
        if fmt == "auto":
            return _imagefolder("no label file in the source: the class is each image's folder", auto=True)
        raise LabelError(f"labels.format is {fmt}, but labels.path is empty and the source ships no label file")
    source = _from_file(files_dir / candidate, str(files_dir / candidate), candidate, fmt, f"{why} ({candidate})")
    if source.format in ("cifar", "idx"):
        raise LabelError(f"{source.name}: {source.format} label files need a CIFAR or IDX source, "
                         f"this one (layout {info.layout}) holds image files")
    return source
