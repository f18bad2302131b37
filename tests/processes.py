"""The test process's own child processes: checks that a run leaves none behind (pools, clusters)."""

from __future__ import annotations

import time


def child_processes() -> set[int]:
    import psutil

    def ours(p) -> bool:  # multiprocessing's resource tracker lives as long as this process
        try:  # a zombie is dead, only not yet reaped by the thread that watches it
            return p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            return False

    return {p.pid for p in psutil.Process().children(recursive=True) if ours(p)}


def assert_no_new_children(before: set[int]) -> None:
    deadline = time.monotonic() + 10
    while (left := child_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.1)  # a process just stopped is reaped within moments
    assert not left, f"processes left behind: {_described(left)}"


def _described(pids: set[int]) -> list[str]:
    import psutil

    out = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            out.append(f"{pid} ({proc.status()}): {' '.join(proc.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            out.append(f"{pid} (gone)")
    return out
