"""What every stage's ``main()`` shares: logging, one-line failures, the closing summary."""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Callable

from imgpipe.errors import PipelineError

log = logging.getLogger("imgpipe")


def setup_logging() -> None:
    """Our own messages at INFO; libraries (GX, DVCLive, ...) stay at WARNING."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr, force=True)
    log.setLevel(logging.INFO)


def run_stage(name: str, body: Callable[[], dict | None]) -> None:
    """Run a stage body; turn a :class:`PipelineError` into one clear line and exit status 1.

    ``body`` returns the summary (counts, what was dropped and why), logged in one block.
    """
    setup_logging()
    started = time.perf_counter()
    try:
        summary = body() or {}
    except PipelineError as exc:
        log.error("%s failed: %s", name, exc)
        sys.exit(1)
    except FileNotFoundError as exc:
        # An upstream output is missing: the stage was run by hand, out of order.
        log.error("%s failed: missing input %s (run `dvc repro %s` to build what it needs)",
                  name, exc.filename or exc, name)
        sys.exit(1)
    except OSError as exc:  # disk full, permission denied, read-only disk, ...: nothing to debug
        log.error("%s failed: %s", name, describe_os_error(exc))
        sys.exit(1)
    elapsed = time.perf_counter() - started
    lines = [f"{name}: done in {elapsed:.1f}s"]
    lines += [f"  {key}: {value}" for key, value in summary.items()]
    log.info("\n".join(lines))


# What a user can do about the errors a full or locked-down disk gives.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free some space and rerun",
    errno.EDQUOT: "the disk quota is used up: free some space and rerun",
    errno.EFBIG: "the file is larger than this filesystem or a size limit (ulimit -f) allows",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "check the permissions of the folder",
    errno.EPERM: "check the permissions of the folder",
}


def describe_os_error(exc: OSError) -> str:
    """One line: the path, the system's words for the problem, and what to do about it.

    ``imgpipe.io`` has already replaced its temporary paths by the output's final path.
    """
    from imgpipe.io import _errno_of

    code = _errno_of(exc)
    problem = os.strerror(code) if code is not None and exc.strerror is None else (exc.strerror or str(exc))
    where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
    hint = _OS_ERROR_HINTS.get(code)
    return f"{where}{problem}" + (f"; {hint}" if hint else "")
