"""Atomic, deterministic output helpers shared by every stage.

A stage builds its outputs in sibling temporary paths and renames them into place only when
everything succeeded, so an interrupted or failing stage never leaves half-written output.
What is renamed is fsynced first (files, then the folder that holds the new name), so a crash
or power cut right after a stage cannot leave a renamed but empty file.

:func:`commit_outputs` makes several outputs land as one unit: inside it, :func:`atomic_dir`
and :func:`atomic_file` (and the writers built on them) of a declared output build it aside,
and all of them are renamed in at the end, or none if anything failed.

An ``OSError`` raised while an output is built (disk full, permission denied, read-only disk)
names the output's final path, not the temporary one, so ``run_stage`` can print one line.
Writers here avoid timestamps and unordered containers, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Errors about the place we write to, not about what we read: these name the output path.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.EIO})


def _tmp_sibling(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_siblings(final: Path) -> None:
    """Remove temporary siblings of ``final`` left by a killed run (their process is gone)."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            pid = int(stale.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fsync_path(path: Path | str) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    flags = os.O_RDONLY
    if Path(path).is_dir():
        flags |= getattr(os, "O_DIRECTORY", 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (a file alone when ``root`` is a file)."""
    if root.is_symlink() or not root.is_dir():
        if not root.is_symlink():
            fsync_path(root)
        return
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                fsync_path(path)
        fsync_path(folder)


# The `[errno 28]` inside messages of libraries that raise OSError without an errno (pyarrow).
_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def _errno_of(exc: OSError) -> int | None:
    if exc.errno is not None:
        return exc.errno
    match = _ERRNO_IN_TEXT.search(str(exc))
    return int(match.group(1)) if match else None


def _naming_output(exc: OSError, tmp: Path, final: Path) -> OSError | None:
    """The same error naming ``final`` (where the user looks) instead of our temporary path.

    ``None`` when the error is about something else (an input file, the network).
    """
    filename = exc.filename
    code = _errno_of(exc)
    if isinstance(filename, (str, os.PathLike)):
        text = os.fspath(filename)
        if not text.startswith(str(tmp)):
            return None
        named = str(final) + text[len(str(tmp)):]
    elif filename is None and code in DISK_ERRNOS:
        named = str(final)
    else:
        return None
    return OSError(code, os.strerror(code) if code is not None else (exc.strerror or str(exc)), named)


@contextlib.contextmanager
def _naming_errors(tmp: Path, final: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        renamed = _naming_output(exc, tmp, final)
        if renamed is None:
            raise
        raise renamed from exc


class Transaction:
    """Outputs built aside, renamed in together by :func:`commit_outputs`."""

    def __init__(self, outputs: list[Path]):
        self.outputs = outputs
        self.pending: dict[Path, Path] = {}  # final -> finished temporary path

    def owns(self, final: Path) -> bool:
        return final.absolute() in self.outputs

    def stage(self, tmp: Path, final: Path) -> None:
        previous = self.pending.pop(final.absolute(), None)
        if previous is not None:  # written twice in one stage: the last one wins
            _remove(previous)
        self.pending[final.absolute()] = tmp

    def discard(self) -> None:
        for tmp in self.pending.values():
            _remove(tmp)
        self.pending.clear()

    def commit(self) -> None:
        """fsync everything, then rename each output in; on a failure put the old ones back."""
        try:
            for final, tmp in self.pending.items():
                with _naming_errors(tmp, final):
                    fsync_tree(tmp)
        except BaseException:
            self.discard()
            raise
        swapped: list[tuple[Path, Path | None]] = []  # (final, its previous version moved aside)
        try:
            for final, tmp in self.pending.items():
                with _naming_errors(tmp, final):
                    swapped.append((final, _swap_in(tmp, final, keep_old=True)))
        except BaseException:
            for final, old in reversed(swapped):
                _remove(final)
                if old is not None:
                    os.replace(old, final)
            self.discard()
            raise
        self.pending.clear()
        for folder in sorted({final.parent for final, _old in swapped}):
            fsync_path(folder)
        for _final, old in swapped:
            if old is not None:
                _remove(old)


_ACTIVE: contextvars.ContextVar[Transaction | None] = contextvars.ContextVar("imgpipe_outputs", default=None)


def _swap_in(tmp: Path, final: Path, keep_old: bool = False) -> Path | None:
    """Rename ``tmp`` onto ``final``; return where the previous ``final`` was kept (or None).

    ``keep_old``: keep the previous file too (a transaction may have to put it back).
    """
    old, moved = None, False
    exists = final.exists() or final.is_symlink()
    if (final.is_dir() and not final.is_symlink()) or (tmp.is_dir() and exists):
        # os.replace cannot put a folder over a folder (or a file): move the old one aside first.
        old = _tmp_sibling(final)
        os.replace(final, old)
        moved = True
    elif keep_old and exists:
        # A second name for the old file: the rename below stays atomic, and the old bytes stay.
        old = _tmp_sibling(final)
        try:
            os.link(final, old, follow_symlinks=False)
        except OSError:  # a filesystem without hard links: a copy does the same job
            shutil.copy2(final, old, follow_symlinks=False)
    try:
        os.replace(tmp, final)
    except BaseException:
        if moved:
            os.replace(old, final)
        elif old is not None:
            old.unlink()
        raise
    return old


@contextlib.contextmanager
def commit_outputs(*outputs: Path | str) -> Iterator[Transaction]:
    """Make a stage's outputs land as one unit: every one of them, or none.

    Inside the block, ``atomic_dir``/``atomic_file``/``write_json``/``write_parquet`` of a path in
    ``outputs`` build it aside; the renames happen together when the block ends without an
    exception (after fsyncing everything). Other paths (caches, logs) are written at once as
    usual. A declared output that the block did not write is left as it was::

        with commit_outputs(paths.preprocessed, PREPROCESS_METRICS):
            summary = preprocess_images(paths.raw, paths.preprocessed, cfg)
            write_json(PREPROCESS_METRICS, metrics(summary))

    Code inside the block must not read back a declared output it just wrote (it is not in
    place until the block ends).
    """
    if _ACTIVE.get() is not None:
        raise RuntimeError("commit_outputs blocks do not nest")
    tx = Transaction([Path(p).absolute() for p in outputs])
    token = _ACTIVE.set(tx)
    try:
        yield tx
    except BaseException:
        tx.discard()
        raise
    finally:
        _ACTIVE.reset(token)
    tx.commit()


def _finish(tmp: Path, final: Path) -> None:
    """Put a finished temporary output in place: now, or at the end of the active transaction."""
    tx = _ACTIVE.get()
    if tx is not None and tx.owns(final):
        tx.stage(tmp, final)
        return
    with _naming_errors(tmp, final):
        fsync_tree(tmp)
        old = _swap_in(tmp, final)
        fsync_path(final.parent)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_dir(final: Path | str) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces ``final`` on success.

    On any exception the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = _tmp_sibling(final)
    with _naming_errors(tmp, final):
        tmp.mkdir()
    try:
        with _naming_errors(tmp, final):
            yield tmp
        _finish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path | str) -> Iterator[Path]:
    """Yield a temporary file path that is renamed onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(final)
    try:
        with _naming_errors(tmp, final):
            yield tmp
        _finish(tmp, final)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_json(data: Any) -> str:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def write_json(path: Path | str, data: Any) -> None:
    text = dumps_json(data)  # before the file exists: a value that cannot be written leaves nothing
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_parquet(df, path: Path | str) -> None:
    """Write a DataFrame to parquet with no pandas index and fixed writer settings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    # Drop the pandas metadata blob: it embeds library versions, which would change the bytes
    # after an upgrade although the data did not change.
    table = table.replace_schema_metadata(None)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def read_parquet(path: Path | str):
    import pandas as pd

    return pd.read_parquet(path)
