"""Learning-rate schedules as pure functions of (step, total steps): defined for any total >= 1.

Each returns the multiplier of the peak ``train.lr`` for optimiser step ``step`` (0-based). The
one-cycle schedule of the seed crashed with ZeroDivisionError when a run had fewer steps than its
phases (for example 4 steps in all); here every phase length is at least one step and a run of one
step simply uses the peak rate.
"""

from __future__ import annotations

import math

SCHEDULES = ("triangle", "onecycle", "cosine", "constant")


def _frac(step: int, total: int) -> float:
    return min(max(step, 0), total - 1) / max(total - 1, 1)


def multiplier(kind: str, step: int, total: int, warmup: float = 0.23) -> float:
    if total < 1:
        raise ValueError(f"a schedule needs at least one step, got {total}")
    if total == 1 or kind == "constant":
        return 1.0
    t = _frac(step, total)  # 0 at the first step, 1 at the last
    peak = min(max(warmup, 0.0), 1.0)
    if kind == "triangle":
        # airbench94: linear 0.2 -> 1 at ``warmup``, then linear down to 0.07.
        if peak > 0 and t < peak:
            return 0.2 + 0.8 * t / peak
        return 1.0 + (0.07 - 1.0) * (t - peak) / max(1.0 - peak, 1e-12)
    if kind == "onecycle":
        # PyTorch's OneCycleLR shape (cosine up from 1/25, cosine down to 1/25e4), any length.
        lo, end = 1 / 25, 1 / 25e4
        if peak > 0 and t < peak:
            return lo + (1 - lo) * (1 - math.cos(math.pi * t / peak)) / 2
        return end + (1 - end) * (1 + math.cos(math.pi * (t - peak) / max(1.0 - peak, 1e-12))) / 2
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {kind!r}: choose one of {', '.join(SCHEDULES)}")
