"""Resume checkpoints: one file per run key, written after every epoch, outside DVC's outputs.

The key is a hash of the train params (except where the checkpoint lives and how many processes
run) and of the bytes of the training inputs and the training code, so a checkpoint left by a run
with other params, other data or other code is never resumed: it is discarded and training
starts over. A finished run removes its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from imgpipe.errors import PipelineError

# Params that do not change the computed weights.
NOT_IN_KEY = {"checkpoint_dir", "nproc", "threads"}


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def run_key(cfg_dump: dict, input_dir: Path, code_paths: list[Path], extra: dict | None = None) -> str:
    """sha256 over the params, every file under ``input_dir`` and the code files."""
    h = hashlib.sha256()
    params = {k: v for k, v in cfg_dump.items() if k not in NOT_IN_KEY}
    h.update(json.dumps({"params": params, "extra": extra or {}}, sort_keys=True, default=str).encode())
    for base in [Path(input_dir), *map(Path, code_paths)]:
        files = sorted(p for p in (base.rglob("*") if base.is_dir() else [base]) if p.is_file()
                       and "__pycache__" not in p.parts)
        for path in files:
            h.update(path.as_posix().encode() if base != Path(input_dir) else path.relative_to(base).as_posix().encode())
            _hash_file(h, path)
    return h.hexdigest()[:20]


def path_for(checkpoint_dir: Path, key: str) -> Path:
    return Path(checkpoint_dir) / f"resume-{key}.pt"


def discard_stale(checkpoint_dir: Path, key: str) -> list[Path]:
    """Remove checkpoints of other keys (other params/data/code); returns what was removed."""
    removed = []
    for old in Path(checkpoint_dir).glob("resume-*.pt"):
        if old.name != path_for(checkpoint_dir, key).name:
            old.unlink(missing_ok=True)
            removed.append(old)
    return removed


def model_checkpoint(model, arch: str, meta: dict, norm: dict, options: dict, *, precision: str, bf16: bool,
                     tta: bool) -> dict:
    """The saved model (``models/model.pt``): everything predict needs besides the code; loads with
    ``torch.load(weights_only=True)`` and :func:`imgpipe.inference.load_checkpoint`."""
    return {
        "arch": arch,
        "model_options": options,
        "classes": meta["classes"],
        "image_size": [meta["height"], meta["width"]],
        "channels": meta["channels"],
        "norm": norm,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "bf16": bf16,  # evaluate/predict: bf16 autocast as in training
        "precision": precision,
        "tta": tta,  # evaluate/predict: average with the mirror image
    }


def save(path: Path, payload: dict) -> None:
    import torch

    from imgpipe.io import atomic_file

    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none or it cannot be read (then it is removed)."""
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError):
        path.unlink(missing_ok=True)
        return None


def load_weights_file(path: Path) -> dict:
    """A state dict from a user-supplied weights file; a pickle carrying code is refused."""
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # not a pickle naming code: junk bytes
            raise PipelineError(f"{path}: not a readable torch weights file (unpickling failed)") from None
        raise PipelineError(
            f"{path}: refused to load: the file holds pickled Python objects or code, not just tensors "
            "(weights are loaded with torch.load(weights_only=True)); save a plain state_dict") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{path}: not a readable torch weights file ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise PipelineError(f"{path}: not a state_dict (expected a mapping of parameter names to tensors)")
    return obj
