"""Where and how torch runs: device choice, bf16/AMP support, threads, seeds, determinism."""

from __future__ import annotations

import contextlib
import os


def bf16_supported() -> bool:
    """True when this CPU has native bf16 matrix units (oneDNN says so): AVX512-BF16 or AMX."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_device(local_rank: int = 0):
    """CUDA (the rank's GPU) when one is visible, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def mixed_precision(device, bf16: bool) -> tuple[bool, str]:
    """``(enabled, label)``: AMP on every GPU (bf16 where supported, else fp16), bf16 on CPUs with
    native bf16 units when ``bf16`` is asked for, fp32 otherwise."""
    import torch

    if device.type == "cuda":
        return True, "cuda amp " + ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    if bf16 and bf16_supported():
        return True, "bf16 autocast"
    return False, "fp32"


def autocast(device, enabled: bool):
    import torch

    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def configure(threads: int, seed: int, device=None) -> None:
    """Threads, seed and deterministic algorithms (identical weights on one machine)."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    if device is not None and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        # Some CUDA kernels (max-pool backward) have no deterministic variant: warn, do not fail.
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
