"""The torch runtime: what this machine supports, and the seeded, deterministic setup."""

from __future__ import annotations

import os

import torch


def bf16_supported() -> bool:
    """bf16 autocast pays on CPUs with native bf16 units (AVX512-BF16, AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def configure(threads: int, seed: int) -> None:
    """Intra-op threads (0 = all cores), the global seed, and deterministic algorithms."""
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
