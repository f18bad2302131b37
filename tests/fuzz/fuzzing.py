"""What every fuzz property shares: the Hypothesis profiles and the outcome check."""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

from imgpipe.errors import PipelineError

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                                       HealthCheck.filter_too_much]}
settings.register_profile("ci", max_examples=50, derandomize=True, database=None, print_blob=True, **_COMMON)
_NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
settings.register_profile("long", max_examples=int(os.environ.get("IMGPIPE_FUZZ_EXAMPLES", "2000")),
                          database=None, print_blob=True,
                          **({"phases": _NO_SHRINK} if os.environ.get("IMGPIPE_FUZZ_SHRINK") == "0" else {}),
                          **_COMMON)
# While fixing: the ci examples, failures reported as found (shrinking a zip can take minutes).
settings.register_profile("triage", parent=settings.get_profile("ci"),
                          phases=_NO_SHRINK)
settings.load_profile(os.environ.get("IMGPIPE_FUZZ_PROFILE", "ci"))


HANG_S = 20  # one parse of a few hundred bytes taking this long is a hang, not slowness


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Fail the example (rather than the whole run) when one call does not return in time."""
    def alarm(_signum, _frame):
        raise Hang(f"no result after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call, name: str):
    """The property every parser keeps: a result, or one :class:`PipelineError` line that names
    ``name`` (the file), within HANG_S. Any other exception propagates and fails the example.

    Returns ``(result, None)`` or ``(None, message)``.
    """
    try:
        with time_limit(HANG_S):
            return call(), None
    except PipelineError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        assert name in message, f"the message does not name {name!r}: {message!r}"
        return None, message


@contextmanager
def scratch():
    """A fresh folder per example (pytest's tmp_path is one per test, shared by every example)."""
    with tempfile.TemporaryDirectory(prefix="imgpipe-fuzz-") as tmp:
        yield Path(tmp)


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: relative path -> kind (file, dir, link, other)."""
    out = {}
    for path in sorted(root.rglob("*")):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file" if path.is_file() else "other"
        out[path.relative_to(root).as_posix()] = kind
    return out
