"""The test process's own child processes: checks that a run leaves none behind (pools, clusters)."""

from __future__ import annotations

import time

# How long a process that was just stopped may take to be gone. A Dask worker killed for a stuck
# task exits within moments on a quiet machine, but took over 10 s in CI on 2 busy cores.
GONE_WITHIN_S = 30.0


def child_processes() -> dict[int, str]:
    """Live descendants of this process: pid -> what it runs, read when it was listed (a pid
    read again later may belong to another process by then)."""
    import psutil

    found = {}
    for p in psutil.Process().children(recursive=True):
        try:  # a zombie is dead, only not yet reaped by the thread that watches it
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            command = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "resource_tracker" not in command:  # multiprocessing's lives as long as this process
            found[p.pid] = command[:160]
    return found


def assert_no_new_children(before: dict[int, str]) -> None:
    deadline = time.monotonic() + GONE_WITHIN_S
    while (left := {pid: cmd for pid, cmd in child_processes().items() if pid not in before}) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left behind after {GONE_WITHIN_S:.0f} s: {[f'{p}: {c}' for p, c in left.items()]}"
