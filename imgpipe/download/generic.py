"""A user's own source: an archive or folder at an http(s):// or s3:// URL or a local path.

Archives are fetched and verified first (see :mod:`imgpipe.download.fetch`), then extracted
safely (see :mod:`imgpipe.download.extract`); folders are copied. Either way the payload lands in
``files/`` with a single common top-level folder stripped, and the labels stage decides how to
read labels from it (ImageFolder, split folders, or a label file).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from imgpipe.download.extract import (
    Budget,
    HashingReader,
    MemberSink,
    _hidden,
    copy_entry,
    extract_archive,
    manifest_sha256,
    tree_top_folder,
    walk_tree,
)
from imgpipe.download.fetch import (
    BACKOFF_S,
    fetch_verified,
    local_path,
    normalize_sha256,
    redact,
    source_kind,
)
from imgpipe.errors import ChecksumMismatch, SourceError
from imgpipe.params.download import DownloadParams
from imgpipe.rawdata import FILES_DIR, SourceInfo, is_packable, write_packs

_STAGING = ".staging"


def pack_tree(root: Path, tmp: Path, budget: Budget) -> tuple[list[tuple[str, str, int]], str | None, dict]:
    """Read a local folder once, straight into ``tmp``'s packs (images) and ``files/`` (sidecars).

    Gives what copying the folder to ``files/`` and then packing it gave, byte for byte, without
    writing, re-reading and deleting a staged copy of every file: (manifest entries, stripped top
    folder, pack summary).
    """
    entries = walk_tree(root, budget)
    if not entries:
        raise SourceError(f"{budget.source}: holds no files")
    top = tree_top_folder(entries)
    cut = len(top) + 1 if top else 0
    named = sorted(((e.rel[cut:], e) for e in entries), key=lambda t: t[0])
    images = [(rel, e) for rel, e in named if is_packable(rel)]
    manifest = [copy_entry(e, tmp / FILES_DIR / rel, budget) for rel, e in named if not is_packable(rel)]

    @contextlib.contextmanager
    def read(i: int):
        with HashingReader(images[i][1], budget) as reader:
            yield reader
            manifest.append(reader.close())

    packed = write_packs(tmp, [(rel, e.size) for rel, e in images], read)
    (tmp / FILES_DIR).mkdir(exist_ok=True)
    return sorted(manifest), top, packed


def _keep_loose(parts: tuple[str, ...]) -> bool:
    """Members that stay files under ``files/``: sidecars (label files, docs) and hidden ones,
    exactly those that packing a copied tree left loose."""
    return not is_packable(parts[-1]) or any(_hidden(p) for p in parts)


def unpack_archive(archive: Path, tmp: Path, budget: Budget) -> tuple[str | None, dict]:
    """Extract ``archive`` straight into ``tmp``'s packs (images) and ``files/`` (the rest).

    Images go to one spill file as they stream out of the archive (no file per image), then into
    the packs in ``list_items`` order: the same bytes as extracting every member to ``files/``
    and packing them, at a fraction of the file-system work. (stripped top folder, pack summary)
    """
    staging = tmp / _STAGING
    sink = MemberSink(tmp / ".spill", staging, _keep_loose)
    try:
        extract_archive(archive, sink, budget)
        if budget.files == 0:
            raise SourceError(f"{budget.source}: holds no files")
        top = sink.top_folder()
        cut = 1 if top else 0
        images = sorted(("/".join(parts[cut:]), where) for parts, where in sink.files.items()
                        if where is not None)
        sink.spill.flush()
        fd = os.open(sink.spill_path, os.O_RDONLY)
        try:
            @contextlib.contextmanager
            def read(i: int):
                offset, size = images[i][1]
                yield os.pread(fd, size, offset) if size < (64 << 20) else _SpillSlice(fd, offset, size)

            packed = write_packs(tmp, [(rel, where[1]) for rel, where in images], read)
        finally:
            os.close(fd)
    finally:
        sink.close()
        sink.spill_path.unlink(missing_ok=True)
    loose = staging / top if top else staging
    if loose.is_dir():
        os.replace(loose, tmp / FILES_DIR)
    (tmp / FILES_DIR).mkdir(exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    return top, packed


class _SpillSlice:
    """A large image's bytes in the spill file, read in chunks."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.pos, self.end = fd, offset, offset + size

    def read(self, n: int = -1) -> bytes:
        n = self.end - self.pos if n < 0 else min(n, self.end - self.pos)
        chunk = os.pread(self.fd, n, self.pos)
        self.pos += len(chunk)
        return chunk


def acquire_generic(source: str, cfg: DownloadParams, tmp: Path, backoff_s: float = BACKOFF_S) -> SourceInfo:
    """Fetch ``source`` into ``tmp/files``; return its provenance."""
    label = redact(source)
    kind = source_kind(source)
    pin = normalize_sha256(cfg.sha256)
    budget = Budget(label, cfg.max_extract_bytes, cfg.max_members)
    extra: dict = {}
    if kind == "path" and local_path(source).is_dir():
        try:
            entries, top, packed = pack_tree(local_path(source), tmp, budget)
        except OSError as exc:
            raise SourceError(f"{label}: cannot copy: {exc.strerror or exc}") from None
        sha256 = manifest_sha256(entries)
        if pin and sha256 != pin:
            raise ChecksumMismatch(f"{label}: checksum mismatch: expected sha256 {pin}, got {sha256} "
                                   "(the sha256 of the folder's sha256sum manifest)")
        extra["sha256_of"] = "sha256sum manifest of the folder's files"
        extra["packed"] = packed
        if top:
            extra["stripped_top_folder"] = top
        if budget.skipped_links:
            extra["skipped_links"] = sorted(budget.skipped_links)
        extra["summary"] = {"files": budget.files, "extracted bytes": budget.bytes}
        return SourceInfo(source=label, kind=kind, layout="files", url=label, final_url=label,
                          size_bytes=sum(size for _rel, _sha, size in entries), sha256=sha256, extra=extra)
    else:
        archive, result, _md5 = fetch_verified(source, cfg, sha256=pin, backoff_s=backoff_s)
        top, extra["packed"] = unpack_archive(archive, tmp, budget)
        final_url, size, sha256 = result.final_url, result.size_bytes, result.sha256
    if top:
        extra["stripped_top_folder"] = top
    if budget.skipped_links:
        extra["skipped_links"] = sorted(budget.skipped_links)
    if cfg.s3_endpoint_url and kind == "s3":
        extra["s3_endpoint_url"] = cfg.s3_endpoint_url
    extra["summary"] = {"files": budget.files, "extracted bytes": budget.bytes}
    return SourceInfo(source=label, kind=kind, layout="files", url=label, final_url=final_url,
                      size_bytes=size, sha256=sha256, extra=extra)
