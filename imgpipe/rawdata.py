"""The download stage's output layout, and how later stages list and read what is in it.

``<raw>/source.json`` records provenance and layout; ``<raw>/files/`` holds the payload as the
source delivered it (official dataset files, or an extracted archive or copied folder).

Every image has an ``item_id``: its POSIX path relative to ``files/``, or for images stored
inside an array file (CIFAR batches, IDX files) ``"<file>#<index>"``. Preprocess, labels and
validate join on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from imgpipe import arrayfiles
from imgpipe.contracts import FILES_DIR, PACK_DIR, PACK_INDEX, SOURCE_FILE, SOURCE_SPLIT
from imgpipe.errors import PipelineError

__all__ = ["FILES_DIR", "PACK_DIR", "PACK_INDEX", "SOURCE_FILE"]  # the raw layout's names, from contracts

# A URL-list (crawled) source also writes, beside files/ and packed/: one row per list row
# (status "ok" or a failure reason), and the failed rows alone.
CRAWL_ITEMS = "crawl/items.parquet"
CRAWL_FAILURES = "crawl/failures.parquet"

ARRAY_COUNTS = "array_counts"  # source.json extra: images per array file, so listing loads none
PACK_MAX_BYTES = 1 << 30  # bounded packs: a changed image re-uploads at most one of them
# Set by imgpipe.privacy.raw.protecting during a download: (raw_dir, members, read) -> (members, read).
PACK_FILTER: ContextVar = ContextVar("imgpipe_pack_filter", default=None)
# Set by the crawler around its write_packs: item_id -> the URLs it was fetched from (take-downs by URL).
PACK_URLS: ContextVar = ContextVar("imgpipe_pack_urls", default=None)

Layout = Literal["files", "cifar10", "cifar100", "idx"]
LAYOUTS = ("files", "cifar10", "cifar100", "idx")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
# Files that travel with images but are not images: label files, docs, metadata.
SIDECAR_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".txt", ".md", ".yaml", ".yml", ".xml", ".parquet"}
SPLIT_DIRS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
              "test": "test", "testing": "test"}

# Official file names inside each layout, and the split each holds.
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = [(f"{CIFAR10_DIR}/data_batch_{i}", "train") for i in range(1, 6)] + [
    (f"{CIFAR10_DIR}/test_batch", "test")
]
CIFAR100_DIR = "cifar-100-python"
CIFAR100_FILES = [(f"{CIFAR100_DIR}/train", "train"), (f"{CIFAR100_DIR}/test", "test")]
IDX_FILES = [
    ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "train"),
    ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "test"),
]


@dataclass(frozen=True)
class SourceInfo:
    """Contents of ``source.json``; written by download, read by every later stage."""

    source: str
    kind: str  # builtin | official | url | s3 | path
    layout: Layout
    url: str | None = None  # what was asked for
    final_url: str | None = None  # after redirects
    size_bytes: int | None = None
    sha256: str | None = None
    classes: list[str] | None = None  # class names the source itself defines, in index order
    label_file: str | None = None  # label file shipped with the source, relative to files/
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def read(cls, raw_dir: Path | str) -> SourceInfo:
        path = Path(raw_dir) / SOURCE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineError(f"{path}: missing; run the download stage first") from None
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{path}: not valid JSON: {exc}") from None
        except UnicodeDecodeError as exc:
            raise PipelineError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        what = f"{path}: not a source record written by the download stage"
        if not isinstance(data, dict):
            raise PipelineError(f"{what}: a {type(data).__name__}, expected an object")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:  # repr: a key may hold a line break
            raise PipelineError(f"{what}: unknown field {unknown[0]!r}")
        missing = [k for k in ("source", "kind", "layout") if k not in data]
        if missing:
            raise PipelineError(f"{what}: no {missing[0]!r} field")
        info = cls(**data)
        problem = info._type_problem()
        if problem:  # found by fuzzing: {"source": null, ...} was taken and failed stages later
            raise PipelineError(f"{path}: not a source record written by the download stage: {problem}")
        return info

    def _type_problem(self) -> str | None:
        """What a hand-edited or damaged record gets wrong, so later stages may trust the types."""
        def text(value, optional: bool = True) -> bool:
            return isinstance(value, str) or (optional and value is None)

        if not (text(self.source, False) and text(self.kind, False)):
            return "'source' and 'kind' must be text"
        if self.layout not in LAYOUTS:
            return f"'layout' is {self.layout!r}, expected one of {', '.join(LAYOUTS)}"
        for key in ("url", "final_url", "sha256", "label_file"):
            if not text(getattr(self, key)):
                return f"{key!r} must be text or null"
        if self.size_bytes is not None and type(self.size_bytes) is not int:
            return "'size_bytes' must be a whole number or null"
        if self.classes is not None and not (isinstance(self.classes, list)
                                             and all(isinstance(c, str) for c in self.classes)):
            return "'classes' must be a list of names or null"
        if not isinstance(self.extra, dict):
            return "'extra' must be an object"
        return None


@dataclass(frozen=True)
class RawItem:
    item_id: str
    source_split: str  # train | val | test | "" (the source defines none)
    file: str  # relative to files/ (for a packed image, its member name in the pack)
    index: int | None = None  # position inside an array file
    pack: int | None = None  # packed images: which pack file, and where its bytes are
    offset: int | None = None
    size: int | None = None


def split_of(rel_path: str) -> str:
    """The split a source defines through its folder layout (``train/cat/1.png`` -> train)."""
    first, sep, _rest = rel_path.partition("/")
    return SPLIT_DIRS.get(first.lower(), "") if sep else ""


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def list_payload_files(files_dir: Path) -> list[str]:
    """Every regular file under ``files_dir`` as sorted POSIX relative paths (hidden ones skipped).

    An explicit ``os.scandir`` walk: about 40x faster than ``Path.rglob`` plus per-path stat
    calls, which matters at 60,000 files.
    """
    out: list[str] = []
    if not files_dir.is_dir():  # a packed source may have no loose files (DVC drops empty dirs)
        return out
    stack = [("", str(files_dir))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if _hidden(entry.name):
                    continue
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    out.append(rel)
    out.sort()
    return out


def pack_name(index: int) -> str:
    return f"{PACK_DIR}/images-{index:05d}.tar"


def _deterministic_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_images(raw_dir: Path, label_file: str | None = None, max_pack_bytes: int = PACK_MAX_BYTES) -> dict:
    """Move the image files of ``<raw_dir>/files`` into a few uncompressed tar packs.

    DVC hashes, pushes and pulls per file, so 60,000 loose images make ``dvc status`` and every
    transfer slow; a handful of packs plus an index keep both fast. Members are written in
    ``list_items`` order with fixed headers (no timestamps or owners), so the packs are
    byte-identical for the same files; ``tar tf`` lists them. Label files and other sidecars stay
    loose in ``files/``, where the labels stage reads them.
    """
    files_dir = raw_dir / FILES_DIR
    items = _walk_items(files_dir, label_file)
    sizes = [(files_dir / item.file).stat().st_size for item in items]

    @contextlib.contextmanager
    def read(i: int):
        path = files_dir / items[i].file
        with open(path, "rb") as fh:
            yield fh
        path.unlink()

    packed = write_packs(raw_dir, [(item.item_id, size) for item, size in zip(items, sizes, strict=True)],
                         read, max_pack_bytes)
    _remove_empty_dirs(files_dir)
    files_dir.mkdir(exist_ok=True)
    return packed


def _header_template() -> bytes:
    """This Python's ``tarfile`` header for a deterministic member, with name, size and checksum blank."""
    buf = bytearray(_deterministic_member("x", 0).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    buf[0:100] = bytes(100)
    buf[124:136] = bytes(12)
    buf[148:156] = b"        "
    return bytes(buf)


_HEADER_TEMPLATE: bytes | None = None
_HEADER_SUM = 0


def member_header(name: str, size: int) -> bytes:
    """The tar header :func:`_deterministic_member` gives in a PAX-format archive, built directly.

    A short ASCII name gives a plain ustar block: ``tarfile``'s own block for a blank member with
    the name, size and checksum filled in, ~30x faster than ``tarfile`` building each one (which
    dominated packing 60,000 small files). Long or non-ASCII names go through ``tarfile`` itself.
    A test checks the bytes against ``tarfile``.
    """
    global _HEADER_TEMPLATE, _HEADER_SUM
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or not raw.isascii() or size >= 8**11:
        return _deterministic_member(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if _HEADER_TEMPLATE is None:
        _HEADER_TEMPLATE = _header_template()
        _HEADER_SUM = sum(_HEADER_TEMPLATE)
    size_field = b"%011o\x00" % size
    buf = bytearray(_HEADER_TEMPLATE)
    buf[0:len(raw)] = raw
    buf[124:136] = size_field
    buf[148:156] = b"%06o\x00 " % (_HEADER_SUM + sum(raw) + sum(size_field))
    return bytes(buf)


def write_packs(raw_dir: Path, members: list[tuple[str, int]], read, max_pack_bytes: int = PACK_MAX_BYTES,
                splits: Mapping[str, str] | None = None) -> dict:
    """Write ``members`` (item_id, size), in this order, into bounded tar packs plus the index.

    ``read(i)`` returns a context manager giving a readable binary file (or ``bytes``) with member
    ``i``'s bytes. Headers are fixed (no timestamps or owners), so the same members give the same
    bytes; the packs are what ``tarfile`` writes in PAX format, and ``tar tf`` lists them.
    ``splits`` (item_id -> train | val | test | ""): a source that records its splits as data, not
    as the first folder of the path (a parquet dataset's files), so its item ids stay its own; the
    index then gets a ``source_split`` column. Without it the index is as before (no such column).
    """
    hook = PACK_FILTER.get()
    if hook is not None:  # the privacy layer: take-downs and metadata strip before any byte is packed
        members, read = hook(raw_dir, members, read)
    (raw_dir / PACK_DIR).mkdir(exist_ok=True)
    rows: dict[str, list] = {"item_id": [], "pack": [], "offset": [], "size": []}
    groups = _bounded_groups([size for _item, size in members], max_pack_bytes)
    block = tarfile.BLOCKSIZE
    for pack, (start, stop) in enumerate(groups):
        with open(raw_dir / pack_name(pack), "wb") as out:
            offset = 0
            for i in range(start, stop):
                item_id, size = members[i]
                header = member_header(item_id, size)
                out.write(header)
                offset += len(header)
                with read(i) as fh:
                    if isinstance(fh, bytes | bytearray):
                        data_len = len(fh)
                        out.write(fh[:size])
                    else:
                        data_len = 0
                        while data_len < size and (chunk := fh.read(min(1 << 20, size - data_len))):
                            out.write(chunk)
                            data_len += len(chunk)
                if data_len < size:
                    raise OSError(f"{item_id}: unexpected end of data ({data_len} of {size} bytes)")
                rows["item_id"].append(item_id)
                rows["pack"].append(pack)
                rows["offset"].append(offset)
                rows["size"].append(size)
                padded = -(-size // block) * block
                out.write(b"\0" * (padded - size))
                offset += padded
            end = offset + 2 * block  # two zero blocks end the archive, padded to whole records
            out.write(b"\0" * (2 * block + (-end % tarfile.RECORDSIZE)))
    import pandas as pd

    from imgpipe.io import write_parquet

    index = pd.DataFrame({"item_id": pd.array(rows["item_id"], dtype="str"),
                          "pack": np.asarray(rows["pack"], dtype=np.int32),
                          "offset": np.asarray(rows["offset"], dtype=np.int64),
                          "size": np.asarray(rows["size"], dtype=np.int64)})
    if splits is not None:
        index[SOURCE_SPLIT] = pd.array([splits.get(i, "") for i in rows["item_id"]], dtype="str")
    write_parquet(index, raw_dir / PACK_INDEX)
    return {"packed_images": len(members), "packs": len(groups)}


def _bounded_groups(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) runs whose sizes sum to at most ``limit`` (one item at least)."""
    groups, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            groups.append((start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        groups.append((start, len(sizes)))
    return groups


def _remove_empty_dirs(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()


def is_packable(rel: str, label_file: str | None = None) -> bool:
    """Whether a payload file is an image (packed) rather than a sidecar (label file, docs: loose)."""
    return os.path.splitext(rel)[1].lower() not in SIDECAR_SUFFIXES and rel != label_file


def _walk_items(files_dir: Path, label_file: str | None) -> list[RawItem]:
    items = []
    for rel in list_payload_files(files_dir):
        if not is_packable(rel, label_file):
            continue
        items.append(RawItem(item_id=rel, source_split=split_of(rel), file=rel))
    return items


def _packed_items(raw_dir: Path) -> list[RawItem]:
    import pyarrow.parquet as pq

    table = pq.read_table(raw_dir / PACK_INDEX).to_pydict()
    # a recorded split (write_packs' ``splits``) wins over the path's first folder
    splits = table.get(SOURCE_SPLIT) or [split_of(i) for i in table["item_id"]]
    return [
        RawItem(item_id=i, source_split=s, file=i, pack=p, offset=o, size=n)
        for i, s, p, o, n in zip(table["item_id"], splits, table["pack"], table["offset"], table["size"],
                                 strict=True)
    ]


class PackReader:
    """Reads packed images by offset, keeping one descriptor per pack open until ``close``."""

    def __init__(self, raw_dir: Path | str):
        self.raw_dir = Path(raw_dir)
        self.fds: dict[int, int] = {}

    def read(self, item: RawItem) -> bytes:
        """The bytes of a packed item; ``OSError`` when the pack is missing or shorter than its index."""
        assert item.pack is not None and item.offset is not None and item.size is not None
        fd = self.fds.get(item.pack)
        if fd is None:
            fd = self.fds[item.pack] = os.open(self.raw_dir / pack_name(item.pack), os.O_RDONLY)
        data = os.pread(fd, item.size, item.offset)
        if len(data) != item.size:
            raise OSError(f"pack {pack_name(item.pack)} is shorter than its index says")
        return data

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_item_bytes(raw_dir: Path | str, item: RawItem) -> bytes:
    """The encoded bytes of a file-backed image, packed or loose."""
    if item.pack is None:
        return (Path(raw_dir) / FILES_DIR / item.file).read_bytes()
    with PackReader(raw_dir) as packs:
        return packs.read(item)


def list_items(raw_dir: Path | str, info: SourceInfo | None = None) -> list[RawItem]:
    """All images of the source, in a fixed order that every stage shares."""
    raw_dir = Path(raw_dir)
    info = info or SourceInfo.read(raw_dir)
    files_dir = raw_dir / FILES_DIR
    if info.layout == "files" and (raw_dir / PACK_INDEX).exists():
        return _packed_items(raw_dir)
    if info.layout == "files":
        return _walk_items(files_dir, info.label_file)
    items = []
    for rel, split, count in _array_files(files_dir, info.layout, info.extra.get(ARRAY_COUNTS)):
        items += [RawItem(f"{rel}#{i}", split, rel, i) for i in range(count)]
    return items


def _array_files(files_dir: Path, layout: Layout, counts: dict | None = None) -> Iterator[tuple[str, str, int]]:
    """(file, split, image count) for array layouts. The download stage records the counts in
    ``source.json``; without them each file is loaded to count it."""
    if layout in ("cifar10", "cifar100"):
        listed = CIFAR10_FILES if layout == "cifar10" else CIFAR100_FILES
    else:
        listed = [(image_file, split) for image_file, _labels, split in IDX_FILES]
    if counts and all(rel in counts for rel, _split in listed):
        for rel, split in listed:
            yield rel, split, int(counts[rel])
        return
    for rel, split, images, _labels in iter_array_files(files_dir, layout):
        yield rel, split, images.shape[0]


def iter_array_files(files_dir: Path, layout: Layout) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(file, split, images, labels) for each array file of an official layout.

    Images are uint8 ``(N, H, W)`` or ``(N, H, W, C)``.
    """
    if layout in ("cifar10", "cifar100"):
        for rel, split in CIFAR10_FILES if layout == "cifar10" else CIFAR100_FILES:
            path = files_dir / rel
            if not path.exists():
                raise PipelineError(f"{path}: missing from the {layout} download")
            images, labels, _coarse, _names = arrayfiles.load_cifar_batch(path)
            yield rel, split, images, labels
            del images, labels, _coarse, _names  # one batch in memory at a time
    elif layout == "idx":
        for image_file, label_file, split in IDX_FILES:
            images = arrayfiles.load_idx(files_dir / image_file)
            labels = arrayfiles.load_idx(files_dir / label_file).astype(np.int64)
            if images.ndim != 3 or images.dtype != np.uint8:
                raise PipelineError(f"{files_dir / image_file}: expected uint8 (N, H, W) images")
            if labels.shape != (images.shape[0],):
                raise PipelineError(
                    f"{files_dir / label_file}: {labels.shape[0]} labels for {images.shape[0]} images"
                )
            yield image_file, split, images, labels
            del images, labels
    else:
        raise PipelineError(f"layout {layout!r} stores no arrays")


def is_array_layout(layout: str) -> bool:
    return layout in ("cifar10", "cifar100", "idx")
