"""What every stage's ``main()`` shares: logging, one-line failures, the closing summary."""

from __future__ import annotations

import logging
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
    elapsed = time.perf_counter() - started
    lines = [f"{name}: done in {elapsed:.1f}s"]
    lines += [f"  {key}: {value}" for key, value in summary.items()]
    log.info("\n".join(lines))
