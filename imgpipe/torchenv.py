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


# Environment override of ``train.bf16`` (1/true: force bf16 autocast, also on CPUs without native
# bf16 units where it is emulated: slower, not wrong; 0/false: fp32). CI sets it to run the bf16
# path on any machine.
FORCE_BF16_ENV = "IMGPIPE_FORCE_BF16"


def precision_mode(device, setting: bool | str = "auto") -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"`` for ``train.bf16`` (``auto`` | true | false) on ``device``.

    auto: bf16 where the hardware is native (CPUs with AVX512-BF16/AMX, GPUs with bf16), fp16 with
    a GradScaler on older GPUs, fp32 on other CPUs. true: bf16 everywhere (emulated where not
    native). false: fp32 everywhere. ``IMGPIPE_FORCE_BF16`` overrides the param.
    """
    import torch

    env = os.environ.get(FORCE_BF16_ENV, "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        setting = True
    elif env in ("0", "false", "no", "off"):
        setting = False
    if setting is False or setting == "false":
        return "fp32"
    forced = setting is True or setting == "true"
    if device.type == "cuda":
        return "bf16" if forced or torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if forced or bf16_supported() else "fp32"


def mixed_precision(device, bf16: bool | str = "auto") -> tuple[bool, str]:
    """``(autocast on, label)`` for :func:`precision_mode`; the label says how it runs here."""
    mode = precision_mode(device, bf16)
    if mode == "fp32":
        return False, "fp32"
    if device.type == "cuda":
        return True, "cuda amp " + ("bf16" if mode == "bf16" else "fp16 + GradScaler")
    return True, "bf16 autocast" + ("" if bf16_supported() else " (forced; emulated on this CPU, slower)")


def autocast(device, enabled: bool | str):
    """Autocast for ``enabled`` = a :func:`precision_mode` string, or a bool (True: bf16 on a CPU,
    the GPU's AMP dtype on CUDA)."""
    import torch

    if not enabled or enabled == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda":
        if enabled in ("bf16", "fp16"):
            dtype = torch.bfloat16 if enabled == "bf16" else torch.float16
        else:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    # fp16 is the GPU path (precision_mode never picks it for a CPU); a test forces it here so the
    # GradScaler loop runs on every machine.
    return torch.autocast("cpu", dtype=torch.float16 if enabled == "fp16" else torch.bfloat16)


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
