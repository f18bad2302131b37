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

# Params that do not change the computed weights. (``threads`` does, on CPU: the key holds the
# thread count actually used, in ``extra``.)
NOT_IN_KEY = {"checkpoint_dir", "nproc", "threads", "decode_workers"}


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def _hash_tree(base: Path, relative: bool) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in (base.rglob("*") if base.is_dir() else [base]) if p.is_file()
                   and "__pycache__" not in p.parts)
    for path in files:
        h.update(path.relative_to(base).as_posix().encode() if relative else path.as_posix().encode())
        _hash_file(h, path)
    return h.hexdigest()


def run_key_parts(cfg_dump: dict, input_dir: Path, code_paths: list[Path], extra: dict | None = None,
                  more_inputs: tuple[Path, ...] = ()) -> dict:
    """What decides the weights: the params, ``extra`` (precision, threads, ...), and hashes of the
    training inputs (``input_dir`` and ``more_inputs``, files or folders) and of the code. Saved in
    the resume checkpoint to say why one is discarded."""
    data = _hash_tree(Path(input_dir), True)
    if more_inputs:  # e.g. the preprocessed shards augment's index points into
        data = hashlib.sha256("".join([data, *(_hash_tree(Path(p), True) for p in more_inputs)]).encode()).hexdigest()
    code = hashlib.sha256()
    for base in map(Path, code_paths):
        code.update(_hash_tree(base, relative=False).encode())
    params = {k: v for k, v in cfg_dump.items() if k not in NOT_IN_KEY}
    return json.loads(json.dumps({"params": params, "extra": extra or {}, "data": data,
                                  "code": code.hexdigest()}, sort_keys=True, default=str))


def key_of(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def run_key(cfg_dump: dict, input_dir: Path, code_paths: list[Path], extra: dict | None = None) -> str:
    """sha256 over the params, every file under ``input_dir`` and the code files."""
    return key_of(run_key_parts(cfg_dump, input_dir, code_paths, extra))


def what_changed(old: dict | None, new: dict) -> str:
    """One phrase: why a checkpoint with key parts ``old`` does not fit a run with ``new``."""
    if not old:
        return "it records no run key (written by an older version)"
    reasons = []
    for section in ("params", "extra"):
        a, b = old.get(section, {}), new.get(section, {})
        diffs = [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        if diffs:
            reasons.append(("train params changed: " if section == "params" else "the run changed: ")
                           + ", ".join(diffs[:4]) + (", ..." if len(diffs) > 4 else ""))
    if old.get("data") != new.get("data"):
        reasons.append("the training data changed")
    if old.get("code") != new.get("code"):
        reasons.append("the training code changed")
    return "; ".join(reasons) or "its key differs"


def path_for(checkpoint_dir: Path, key: str) -> Path:
    return Path(checkpoint_dir) / f"resume-{key}.pt"


def discard_stale(checkpoint_dir: Path, key: str, parts: dict | None = None) -> list[tuple[Path, str]]:
    """Remove checkpoints of other keys (other params/data/code); returns ``(path, why)`` pairs."""
    removed = []
    for old in sorted(Path(checkpoint_dir).glob("resume-*.pt")):
        if old.name != path_for(checkpoint_dir, key).name:
            saved = load(old) if parts is not None else None
            why = what_changed((saved or {}).get("key_parts"), parts) if parts is not None else "other key"
            old.unlink(missing_ok=True)
            removed.append((old, why))
    return removed


def model_checkpoint(model, arch: str, meta: dict, norm: dict, options: dict, *, precision: str, bf16: bool,
                     tta: bool, preprocess: dict | None = None) -> dict:
    """The saved model (``models/model.pt``): everything predict needs besides the code; loads with
    ``torch.load(weights_only=True)`` and :func:`imgpipe.inference.load_checkpoint`."""
    checkpoint = {
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
    if preprocess is not None:  # predict decodes new images exactly as the training images were
        checkpoint["preprocess"] = preprocess
    return checkpoint


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
