"""A Hugging Face ``datasets`` parquet dataset as the download source.

``download.source: hf:<path, folder, http(s) URL or s3:// URL>``, or a local ``.parquet`` file or a
folder of them whose columns hold images as bytes (the ``datasets`` Image layout: a struct of
``bytes`` and ``path``). A plain ``.parquet`` URL without the prefix stays a URL list to crawl, as
before: only local files are told apart by content (an image column), so nothing is fetched twice.

Each file's split comes from its name, as the Hub names them (``train-00000-of-00001.parquet``,
``data/validation-...``; ``imgpipe.rawdata.SPLIT_DIRS`` words), and becomes the images' source
split, recorded as data in the pack index (``source_split``), not as a path prefix: item ids are
the row's ``item_id`` column when there is one, so an ``imgpipe export --format hf`` read back has
the ids it was exported with, and ``<file>/<row><ext>`` otherwise.
The ClassLabel names of the label column become the source's classes, in their index order, and
``files/labels.csv`` (``file,label``) carries each image's label to the labels stage.
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
from contextlib import nullcontext
from pathlib import Path

from imgpipe.download.fetch import BACKOFF_S, fetch_verified, local_path, redact, source_kind
from imgpipe.errors import SourceError
from imgpipe.params.download import DownloadParams
from imgpipe.rawdata import FILES_DIR, SPLIT_DIRS, SourceInfo, write_packs

PREFIX = "hf:"
LABEL_FILE = "labels.csv"


def is_hf_parquet(source: str) -> bool:
    """``hf:`` sources, and local parquet files (or folders of them) holding an image column."""
    if source.startswith(PREFIX):
        return True
    try:
        kind = source_kind(source)
    except SourceError:  # another prefix (urls:) or scheme: not ours; its own reader says what is wrong
        return False
    if kind != "path":
        return False
    path = local_path(source)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        return bool(files) and image_column(files[0]) is not None
    return path.suffix.lower() == ".parquet" and path.is_file() and image_column(path) is not None


def _features(schema) -> dict:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    try:
        return json.loads(meta).get("info", {}).get("features", {}) or {}
    except (ValueError, AttributeError):
        return {}


def image_column(path: Path) -> str | None:
    """The column holding images as ``{bytes, path}`` structs (``datasets``' Image), or None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return None
    features = _features(schema)
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "Image" and name in schema.names:
            return name
    for field in schema:
        if pa.types.is_struct(field.type) and {f.name for f in field.type} >= {"bytes", "path"}:
            return field.name
    return None


def split_of_file(rel: str) -> str:
    """The split a Hub file name names: ``train-00000-of-00001.parquet``, ``validation/x.parquet``."""
    for part in reversed(rel.lower().split("/")):
        for word in re.split(r"[-_.]", part):
            if word in SPLIT_DIRS:
                return SPLIT_DIRS[word]
    return ""


def _safe_id(item_id: str, where: str) -> str:
    norm = posixpath.normpath(item_id.replace("\\", "/"))
    if not item_id or norm.startswith(("/", "../")) or norm in (".", "..") or ":" in norm.split("/")[0]:
        raise SourceError(f"{where}: item_id {item_id!r} is not a relative path inside the dataset")
    return norm


def acquire_hf_parquet(source: str, cfg: DownloadParams, tmp: Path, backoff_s: float = BACKOFF_S) -> SourceInfo:
    """Read every image of the parquet dataset into ``tmp``'s packs; return its provenance."""
    import hashlib

    target = source[len(PREFIX):] if source.startswith(PREFIX) else source
    label = redact(source)
    kind = source_kind(target)
    if kind == "path" and local_path(target).is_dir():
        root = local_path(target)
        files = [(p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*.parquet"))]
        if not files:
            raise SourceError(f"{label}: no .parquet files in this folder")
    else:
        path, _result, _md5 = fetch_verified(target, cfg, sha256=cfg.sha256.strip() or None, backoff_s=backoff_s)
        files = [(posixpath.basename(target.rstrip("/")) or "data.parquet", path)]

    images: dict[str, bytes] = {}
    labels: dict[str, str] = {}
    splits: dict[str, str] = {}
    classes: list[str] | None = None
    digest = hashlib.sha256()
    for rel, path in files:
        read = _read_file(path, f"{label} ({rel})", rel)
        if read["classes"] is not None:
            if classes is not None and classes != read["classes"]:
                raise SourceError(f"{label} ({rel}): its ClassLabel names differ from the other files'")
            classes = read["classes"]
        split = split_of_file(rel)
        for item_id, data, name in read["rows"]:
            if item_id in images:
                raise SourceError(f"{label} ({rel}): item {item_id!r} appears twice")
            images[item_id] = data
            splits[item_id] = split
            if name is not None:
                labels[item_id] = name
        # the source's sha256: over each file's name and sha256, in name order
        digest.update(f"{rel}\t{_file_sha256(path)}\n".encode())
    if not images:
        raise SourceError(f"{label}: the dataset holds no images")

    members = sorted(images)
    packed = write_packs(tmp, [(i, len(images[i])) for i in members], lambda i: nullcontext(images[members[i]]),
                         splits=splits)
    files_dir = tmp / FILES_DIR
    files_dir.mkdir(exist_ok=True)
    label_file = None
    if labels:
        with open(files_dir / LABEL_FILE, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["file", "label"])
            writer.writerows((i, labels[i]) for i in members if i in labels)
        label_file = LABEL_FILE
    per_split: dict[str, int] = {}
    for item_id in members:
        per_split[splits[item_id] or "none"] = per_split.get(splits[item_id] or "none", 0) + 1
    extra = {"format": "hf-parquet", "packed": packed, "files": [rel for rel, _ in files],
             "summary": {"images": len(members), "labelled": len(labels), **{f"split {k}": v
                                                                             for k, v in sorted(per_split.items())}}}
    return SourceInfo(source=label, kind="hf-parquet", layout="files", url=redact(target), final_url=redact(target),
                      sha256=digest.hexdigest(), classes=classes, label_file=label_file, extra=extra)


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_file(path: Path, where: str, rel: str) -> dict:
    """(item_id, bytes, class name or None) per row, and the file's ClassLabel names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imgpipe.download.crawl_fetch import image_extension

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"{where}: not a readable parquet file: {str(exc).splitlines()[0]}") from None
    schema = parquet.schema_arrow
    image_col = image_column(path)
    if image_col is None:
        raise SourceError(f"{where}: no image column (a struct of bytes and path, as `datasets` writes)")
    features = _features(schema)
    label_col, classes = None, None
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and name in schema.names:
            label_col, classes = name, [str(n) for n in feature.get("names") or []]
            if name == "label":
                break
    if label_col is None and "label" in schema.names and pa.types.is_string(schema.field("label").type):
        label_col = "label"  # plain text labels
    has_ids = "item_id" in schema.names
    stem = posixpath.splitext(rel)[0]
    rows, row = [], 0
    columns = [image_col] + ([label_col] if label_col else []) + (["item_id"] if has_ids else [])
    for batch in parquet.iter_batches(columns=columns, batch_size=1024):
        data = batch.to_pydict()
        for i, image in enumerate(data[image_col]):
            if not image or not image.get("bytes"):
                raise SourceError(f"{where}: row {row} has no image bytes (images stored by path only "
                                  "are not supported)")
            raw = image["bytes"]
            if has_ids and data["item_id"][i]:
                item_id = _safe_id(str(data["item_id"][i]), where)
            else:
                ext = image_extension(raw[:32]) or posixpath.splitext(image.get("path") or "")[1].lower() or ".bin"
                item_id = f"{stem}/{row:06d}{ext}"
            name = None
            if label_col is not None and data[label_col][i] is not None:
                value = data[label_col][i]
                if classes is not None:
                    if not 0 <= int(value) < len(classes):
                        raise SourceError(f"{where}: row {row}: label {value} is outside the "
                                          f"{len(classes)} ClassLabel names")
                    name = classes[int(value)]
                else:
                    name = str(value)
            rows.append((item_id, raw, name))
            row += 1
    return {"rows": rows, "classes": classes}
