"""Safe extraction of untrusted archives (tar, tar.gz/bz2/xz, zip) and safe copying of folders.

Nothing from the archive decides where bytes go or what kind of file is made: every member name
is checked (no absolute paths, no ``..``), links must stay inside the destination and are
materialised as plain copies (no symlink is ever created, so no later member can write through
one), devices, FIFOs and sockets are refused, and the total bytes written and the member count
are capped while writing, so a decompression bomb is stopped however its headers lie. The first
offending member rejects the whole archive; callers extract into a temporary directory that is
removed on error.
"""

from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from imgpipe.errors import SourceError, UnsafeArchiveError

CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_LINK_TARGET = 4096


@dataclass
class Budget:
    """Counts members and bytes written against the configured limits."""

    source: str
    max_bytes: int
    max_members: int
    members: int = 0
    files: int = 0
    bytes: int = 0
    skipped_links: list[str] = field(default_factory=list)
    # Each file path written so far and the 1-based index of the member that wrote it.
    claimed: dict[tuple[str, ...], tuple[int, str]] = field(default_factory=dict)

    def claim(self, parts: tuple[str, ...], index: int, name: str) -> None:
        """Refuse a second member with the path of an earlier file: extracting both would keep only
        the last one without a word, and which copy a dataset meant is the user's call."""
        first = self.claimed.setdefault(parts, (index, name))
        if first[0] != index:
            raise UnsafeArchiveError(
                f"{self.source}: member #{index} {name!r} has the same path as member #{first[0]} "
                f"{first[1]!r}; the archive holds two files under one name: repack it with one of them")

    def member(self, name: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchiveError(
                f"{self.source}: more than download.max_members={self.max_members} members "
                f"(at member {name!r}); refusing a possible decompression bomb")

    def add(self, n: int, name: str) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise UnsafeArchiveError(
                f"{self.source}: expands beyond download.max_extract_bytes={self.max_bytes} bytes "
                f"at member {name!r}; refusing a possible decompression bomb")


def member_parts(name: str, source: str) -> tuple[str, ...]:
    """The safe relative path of an archive member, or :class:`UnsafeArchiveError`."""
    norm = name.replace("\\", "/")  # zips made on Windows may use backslashes
    if norm.startswith("/") or _DRIVE.match(norm):
        raise UnsafeArchiveError(f"{source}: member {name!r} has an absolute path")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{source}: member {name!r} points outside the destination ('..')")
    if any("\x00" in p for p in parts):
        raise UnsafeArchiveError(f"{source}: member {name!r} has a NUL byte in its name")
    return parts


def link_target(parts: tuple[str, ...], target: str, name: str, source: str, kind: str) -> tuple[str, ...]:
    """Where a symlink (relative to its folder) or hard link (relative to the root) points."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise UnsafeArchiveError(f"{source}: {kind} {name!r} points outside the destination ({target!r})")
    base = "/".join(parts[:-1]) if kind == "symlink" else ""
    joined = posixpath.normpath(posixpath.join(base, norm)) if norm else "."
    if joined == ".." or joined.startswith("../"):
        raise UnsafeArchiveError(f"{source}: {kind} {name!r} points outside the destination ({target!r})")
    return tuple(p for p in joined.split("/") if p not in ("", "."))


class MemberSink:
    """Where extraction puts members instead of one file each: images are appended to one spill
    file (offset, size), other members (``keep_loose``: label files, hidden files) are written
    under ``loose_dir``. Folder/file collisions are checked on the recorded tree exactly as the
    file system checks them on disk, so the same archives are refused for the same reasons.
    """

    def __init__(self, spill: Path, loose_dir: Path, keep_loose) -> None:
        self.spill_path, self.loose_dir, self.keep_loose = spill, loose_dir, keep_loose
        self.spill = open(spill, "w+b")  # noqa: SIM115 - closed by close()
        self.end = 0
        self.files: dict[tuple[str, ...], tuple[int, int] | None] = {}  # None: a loose file
        self.dirs: set[tuple[str, ...]] = set()

    def close(self) -> None:
        self.spill.close()

    def _parents(self, parts: tuple[str, ...], name: str, source: str) -> None:
        prefixes = [parts[:k] for k in range(1, len(parts))]
        if any(p in self.files for p in prefixes):
            raise UnsafeArchiveError(f"{source}: member {name!r} is inside something that is not a folder")
        self.dirs.update(prefixes)

    def target(self, parts: tuple[str, ...], name: str, source: str) -> _SinkTarget:
        if not parts:
            raise UnsafeArchiveError(f"{source}: member {name!r} has an empty path")
        self._parents(parts, name, source)
        if parts in self.dirs:
            raise UnsafeArchiveError(f"{source}: member {name!r} would replace a folder")
        return _SinkTarget(self, parts)

    def mkdir(self, parts: tuple[str, ...], name: str, source: str) -> None:
        if any(parts[:k] in self.files for k in range(1, len(parts) + 1)):
            raise UnsafeArchiveError(f"{source}: folder {name!r} collides with a file")
        self.dirs.update(parts[:k] for k in range(1, len(parts) + 1))

    def write(self, parts: tuple[str, ...], fh, budget: Budget, name: str) -> None:
        budget.files += 1
        if self.keep_loose(parts):
            path = self.loose_dir.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as out:
                while chunk := fh.read(CHUNK):
                    budget.add(len(chunk), name)
                    out.write(chunk)
            self.files[parts] = None
            return
        start = self.end
        self.spill.seek(start)
        while chunk := fh.read(CHUNK):
            budget.add(len(chunk), name)
            self.spill.write(chunk)
            self.end += len(chunk)
        self.files[parts] = (start, self.end - start)

    def open(self, parts: tuple[str, ...]):
        where = self.files[parts]
        if where is None:
            return open(self.loose_dir.joinpath(*parts), "rb")  # noqa: SIM115 - the caller closes it
        self.spill.flush()
        return _SpillReader(self.spill_path, *where)

    def copy_inside(self, src_parts: tuple[str, ...], target: _SinkTarget, budget: Budget, name: str) -> bool:
        if src_parts not in self.files:
            return False
        with self.open(src_parts) as fh:
            self.write(target.parts, fh, budget, name)
        return True

    def top_folder(self) -> str | None:
        """What :func:`single_top_folder` would say of the extracted tree."""
        from imgpipe.rawdata import SPLIT_DIRS

        tops = {p[0] for p in self.files} | {d[0] for d in self.dirs}
        tops = {t for t in tops if not _hidden(t)}
        if len(tops) == 1:
            top = next(iter(tops))
            if (top,) in self.dirs and top.lower() not in SPLIT_DIRS:
                return top
        return None


@dataclass(frozen=True)
class _SinkTarget:
    sink: MemberSink
    parts: tuple[str, ...]


class _SpillReader:
    def __init__(self, path: Path, offset: int, size: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        self.fh.seek(offset)
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        chunk = self.fh.read(n)
        self.left -= len(chunk)
        return chunk

    def __enter__(self) -> _SpillReader:
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def _target(dest: Path | MemberSink, parts: tuple[str, ...], name: str, source: str) -> Path | _SinkTarget:
    if isinstance(dest, MemberSink):
        return dest.target(parts, name, source)
    if not parts:
        raise UnsafeArchiveError(f"{source}: member {name!r} has an empty path")
    path = dest.joinpath(*parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeArchiveError(f"{source}: member {name!r} is inside something that is not a folder") from None
    if path.is_dir():
        raise UnsafeArchiveError(f"{source}: member {name!r} would replace a folder")
    return path


def _write(fh, path: Path | _SinkTarget, budget: Budget, name: str) -> None:
    if isinstance(path, _SinkTarget):
        path.sink.write(path.parts, fh, budget, name)
        return
    budget.files += 1
    with open(path, "wb") as out:
        while chunk := fh.read(CHUNK):
            budget.add(len(chunk), name)
            out.write(chunk)


def _copy_inside(dest: Path | MemberSink, src_parts: tuple[str, ...], path: Path | _SinkTarget, budget: Budget,
                 name: str) -> bool:
    """Materialise a link as a copy of the regular file it names; False if it names none."""
    if isinstance(dest, MemberSink):
        assert isinstance(path, _SinkTarget)
        return dest.copy_inside(src_parts, path, budget, name)
    src = dest.joinpath(*src_parts) if src_parts else dest
    if not src.is_file() or src.is_symlink():
        return False
    with open(src, "rb") as fh:
        _write(fh, path, budget, name)
    return True


# ---------------------------------------------------------------------------------------------
# Archives


def archive_type(path: Path) -> str | None:
    """``tar`` (plain or gzip/bz2/xz-compressed) or ``zip``, from the leading bytes, not the name."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "tar"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except OSError:
        return None


# UnicodeDecodeError: a zip whose UTF-8 flag is set on a name that is not UTF-8 (found by fuzzing).
_CORRUPT = (tarfile.ReadError, tarfile.HeaderError, EOFError, zlib.error, gzip.BadGzipFile,
            lzma.LZMAError, zipfile.BadZipFile, UnicodeDecodeError)


def extract_archive(path: Path, dest: Path | MemberSink, budget: Budget) -> None:
    """Extract into the folder ``dest``, or into a :class:`MemberSink`."""
    kind = archive_type(path)
    if kind is None:
        raise SourceError(f"{budget.source}: not a supported archive (.tar, .tar.gz, .tgz, .tar.bz2, "
                          ".tar.xz, .zip) or folder")
    if not isinstance(dest, MemberSink):
        dest.mkdir(parents=True, exist_ok=True)
    try:
        (extract_zip if kind == "zip" else extract_tar)(path, dest, budget)
    except UnsafeArchiveError:
        raise
    except _CORRUPT as exc:
        what = "zip" if kind == "zip" else "archive"
        raise SourceError(f"{budget.source}: corrupt or truncated {what}: "
                          f"{exc or type(exc).__name__}") from None
    except NotImplementedError as exc:  # found by fuzzing: zipfile on a compression or version it lacks
        raise SourceError(f"{budget.source}: unsupported zip: {exc}") from None
    except OSError as exc:
        raise SourceError(f"{budget.source}: cannot extract: {exc.strerror or exc}") from None


def extract_tar(path: Path, dest: Path | MemberSink, budget: Budget) -> None:
    """One streaming pass (``r|*``): constant memory, and each member is checked before it is
    written."""
    source = budget.source
    symlinks: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    with open(path, "rb") as raw, _open_tar_stream(raw) as tf:
        for member in tf:
            name = member.name
            budget.member(name)
            parts = member_parts(name, source)
            if member.isdir():
                if parts:
                    _mkdir(dest, parts, name, source)
            elif member.issparse():
                raise UnsafeArchiveError(f"{source}: member {name!r} is a sparse file (not supported)")
            elif member.isreg():
                budget.claim(parts, budget.members, name)
                fh = tf.extractfile(member)
                assert fh is not None
                _write(fh, _target(dest, parts, name, source), budget, name)
            elif member.issym():
                budget.claim(parts, budget.members, name)
                symlinks.append((name, parts, link_target(parts, member.linkname, name, source, "symlink")))
            elif member.islnk():
                target = link_target(parts, member.linkname, name, source, "hard link")
                budget.claim(parts, budget.members, name)
                if not _copy_inside(dest, target, _target(dest, parts, name, source), budget, name):
                    raise UnsafeArchiveError(
                        f"{source}: hard link {name!r} names {member.linkname!r}, not an earlier file")
            elif member.ischr() or member.isblk():
                raise UnsafeArchiveError(f"{source}: member {name!r} is a device file")
            elif member.isfifo():
                raise UnsafeArchiveError(f"{source}: member {name!r} is a FIFO")
            else:
                raise UnsafeArchiveError(f"{source}: member {name!r} has unsupported type {member.type!r}")
    _materialise_symlinks(dest, symlinks, budget)


def _open_tar_stream(raw) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=raw, mode="r|*")
    except (TypeError, IndexError) as exc:
        # tarfile's gzip header reader fails so on a file cut inside its first bytes (found by fuzzing).
        raise tarfile.ReadError(f"truncated compression header ({type(exc).__name__})") from None


def _mkdir(dest: Path | MemberSink, parts: tuple[str, ...], name: str, source: str) -> None:
    if isinstance(dest, MemberSink):
        dest.mkdir(parts, name, source)
        return
    path = dest.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeArchiveError(f"{source}: folder {name!r} collides with a file") from None


def _materialise_symlinks(dest: Path | MemberSink, links: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
                          budget: Budget) -> None:
    """Inside links become copies of the file they name (in archive order, so chains resolve);
    links to folders or to nothing are skipped and recorded."""
    for name, parts, target in links:
        path = _target(dest, parts, name, budget.source)
        if not _copy_inside(dest, target, path, budget, name):
            budget.skipped_links.append(name)


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return info.external_attr >> 16 if info.create_system == 3 else 0  # 3: made on Unix


def extract_zip(path: Path, dest: Path | MemberSink, budget: Budget) -> None:
    """The central directory is checked first (member count, declared sizes, types), then each
    member is written with the running byte count, which does not trust the declared sizes."""
    source = budget.source
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        declared = 0
        for index, info in enumerate(infos, 1):
            budget.member(info.filename)
            if not info.filename:  # zipfile itself fails on an empty name (found by fuzzing)
                raise UnsafeArchiveError(f"{source}: member #{index} has an empty name")
            member_parts(info.filename, source)
            declared += info.file_size
            if declared > budget.max_bytes:
                budget.add(declared, info.filename)  # raises with the member's name
            if info.flag_bits & 0x1:
                raise UnsafeArchiveError(f"{source}: member {info.filename!r} is encrypted")
            _check_zip_type(info, source)
        symlinks = []
        for index, info in enumerate(infos, 1):
            name, parts = info.filename, member_parts(info.filename, source)
            if not info.is_dir():
                budget.claim(parts, index, name)
            if stat.S_ISLNK(_zip_mode(info)):
                with zf.open(info) as fh:
                    target = fh.read(_MAX_LINK_TARGET + 1).decode("utf-8", "replace")
                if len(target) > _MAX_LINK_TARGET:
                    raise UnsafeArchiveError(f"{source}: symlink {name!r} has an oversized target")
                symlinks.append((name, parts, link_target(parts, target, name, source, "symlink")))
            elif info.is_dir():
                if parts:
                    _mkdir(dest, parts, name, source)
            else:
                with zf.open(info) as fh:
                    _write(fh, _target(dest, parts, name, source), budget, name)
    _materialise_symlinks(dest, symlinks, budget)


def _check_zip_type(info: zipfile.ZipInfo, source: str) -> None:
    mode = _zip_mode(info)
    if not mode or stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return
    kind = "FIFO" if stat.S_ISFIFO(mode) else "device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
        else "socket" if stat.S_ISSOCK(mode) else "special file"
    raise UnsafeArchiveError(f"{source}: member {info.filename!r} is a {kind}")


# ---------------------------------------------------------------------------------------------
# Folders


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


@dataclass(frozen=True)
class TreeEntry:
    rel: str  # POSIX path relative to the folder
    path: str  # what to read: the file, or the inside file a link names
    size: int


def walk_tree(src: Path, budget: Budget) -> list[TreeEntry]:
    """Every file of a local folder, checked, without reading it: sorted by relative path.

    Links are not followed out of the folder, special files are refused, hidden entries
    (``.git``, ``.DS_Store``) are left out; later stages ignore them anyway. One ``scandir`` per
    folder and one ``lstat`` per file: 60,000 files are listed in well under a second.
    """
    root = src.resolve()
    out: list[TreeEntry] = []
    stack = [("", str(root))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if _hidden(entry.name):
                continue
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((rel + "/", entry.path))
                continue
            budget.member(rel)
            if entry.is_symlink():
                real = _inside_or_refuse(Path(entry.path), root, rel, budget.source)
                if real is None:
                    budget.skipped_links.append(rel)  # dangling
                    continue
                path, st = str(real), os.stat(real)
                if stat.S_ISDIR(st.st_mode):
                    budget.skipped_links.append(rel)  # an inside link to a folder: its files are read anyway
                    continue
            else:
                path, st = entry.path, entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "device file" if (
                    stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "special file"
                raise UnsafeArchiveError(f"{budget.source}: {rel!r} is a {kind}")
            out.append(TreeEntry(rel, path, st.st_size))
    return sorted(out, key=lambda e: e.rel)


class HashingReader:
    """Reads a checked folder entry once: sha256, size and the byte budget as it goes."""

    def __init__(self, entry: TreeEntry, budget: Budget) -> None:
        import hashlib

        # O_NOFOLLOW | O_NONBLOCK: a file swapped for a link or FIFO after the check is not followed
        # or waited on.
        self.fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            raise UnsafeArchiveError(f"{budget.source}: {entry.rel!r} is not a regular file")
        self.entry, self.budget = entry, budget
        self.digest, self.size = hashlib.sha256(), 0
        budget.files += 1

    def read(self, n: int = -1) -> bytes:
        chunk = os.read(self.fd, CHUNK if n < 0 else n)  # unbuffered: small files take one call
        self.budget.add(len(chunk), self.entry.rel)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def close(self) -> tuple[str, str, int]:
        """(relative path, sha256, size) for the folder's manifest."""
        self._close()
        if self.size != self.entry.size:
            raise SourceError(f"{self.budget.source}: {self.entry.rel!r} changed while it was read")
        return self.entry.rel, self.digest.hexdigest(), self.size

    def __enter__(self) -> HashingReader:
        return self

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __exit__(self, *exc) -> None:
        self._close()


def copy_entry(entry: TreeEntry, target: Path, budget: Budget) -> tuple[str, str, int]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with HashingReader(entry, budget) as reader, open(target, "wb") as fout:
        while chunk := reader.read(CHUNK):
            fout.write(chunk)
        return reader.close()


def copy_tree(src: Path, dest: Path, budget: Budget) -> list[tuple[str, str, int]]:
    """Copy a local folder (see :func:`walk_tree` for what is left out or refused).

    Returns ``(relative path, sha256, size)`` per copied file, sorted, for the folder's checksum.
    """
    return sorted(copy_entry(entry, dest / entry.rel, budget) for entry in walk_tree(src, budget))


def tree_top_folder(entries: list[TreeEntry]) -> str | None:
    """What :func:`single_top_folder` would say of a copy of these entries."""
    from imgpipe.rawdata import SPLIT_DIRS

    tops = {e.rel.split("/", 1)[0] for e in entries}
    if len(tops) == 1 and all("/" in e.rel for e in entries):
        top = next(iter(tops))
        return None if top.lower() in SPLIT_DIRS else top
    return None


def _inside_or_refuse(path: Path, root: Path, rel: str, source: str) -> Path | None:
    """The path to read for ``path``: itself, or for a symlink its target inside ``root``."""
    if not path.is_symlink():
        return path
    real = path.resolve()
    if real != root and root not in real.parents:
        raise UnsafeArchiveError(f"{source}: symlink {rel!r} points outside the folder ({os.readlink(path)!r})")
    if not real.exists():
        return None
    return real


def manifest_sha256(entries: list[tuple[str, str, int]]) -> str:
    """sha256 of ``sha256sum``-style lines (``<hex>  <path>``) sorted by path: a folder's checksum.

    For a folder without links this equals, run inside it: ``find . -type f ! -path '*/.*'
    -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum``.
    """
    import hashlib

    lines = "".join(f"{sha}  {rel}\n" for rel, sha, _size in sorted(entries, key=lambda e: e[0].encode()))
    return hashlib.sha256(lines.encode()).hexdigest()


def single_top_folder(staging: Path) -> str | None:
    """The one visible top-level folder everything sits under, if any (not a split folder)."""
    from imgpipe.rawdata import SPLIT_DIRS

    entries = [p for p in staging.iterdir() if not _hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() \
            and entries[0].name.lower() not in SPLIT_DIRS:
        return entries[0].name
    return None
