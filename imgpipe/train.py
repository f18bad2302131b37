"""Training: a seeded PyTorch loop over the augmented, memory-mapped arrays, logged with DVCLive."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgpipe.models import build_model
from imgpipe.params import TrainParams


@dataclass(frozen=True)
class SplitArrays:
    x: np.ndarray  # uint8 (N, H, W, C), memory-mapped
    y: np.ndarray  # int64 (N,)


def load_split(augmented_dir: Path, split: str) -> SplitArrays:
    x = np.load(augmented_dir / f"{split}_x.npy", mmap_mode="r", allow_pickle=False)
    y = np.load(augmented_dir / f"{split}_y.npy", allow_pickle=False)
    return SplitArrays(x, y)


class Normalize(nn.Module):
    """uint8 NHWC -> normalised float NCHW; part of the saved model so predict needs nothing else."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return (x - self.mean) / self.std


def bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def configure_torch(cfg: TrainParams) -> None:
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)


def make_model(arch: str, meta: dict, norm: dict) -> nn.Sequential:
    net = build_model(arch, meta["channels"], len(meta["classes"]), (meta["height"], meta["width"]))
    return nn.Sequential(Normalize(norm["mean"], norm["std"]), net)


def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int, bf16: bool = False) -> torch.Tensor:
    model.eval()
    outs = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, x.shape[0], batch_size):
            # np.array copies: memory-mapped slices are read-only, which torch warns about.
            outs.append(model(torch.from_numpy(np.array(x[start : start + batch_size]))).float())
    return torch.cat(outs)


def _optimizer(model: nn.Module, cfg: TrainParams) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(augmented_dir: Path, cfg: TrainParams, live_dir: Path, progress: bool = True) -> tuple[dict, dict]:
    """Train; return ``(checkpoint, final metrics)``. The checkpoint loads with ``weights_only=True``."""
    from dvclive import Live
    from tqdm import tqdm

    configure_torch(cfg)
    meta = json.loads((augmented_dir / "meta.json").read_text())
    norm = json.loads((augmented_dir / "norm.json").read_text())
    train_split, val_split = load_split(augmented_dir, "train"), load_split(augmented_dir, "val")
    model = make_model(cfg.model, meta, norm)
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = -(-len(train_split.y) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    use_bf16 = cfg.bf16 and bf16_supported()
    final: dict = {}
    with Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for epoch in range(cfg.epochs):
            model.train()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_split.y))
            seen, loss_sum, correct = 0, 0.0, 0
            batches = range(0, len(order), cfg.batch_size)
            for start in tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                              disable=None if progress else True, leave=False):
                idx = np.sort(order[start : start + cfg.batch_size])
                xb = torch.from_numpy(train_split.x[idx])
                yb = torch.from_numpy(train_split.y[idx])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(xb)
                    loss = loss_fn(logits.float(), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                seen += len(idx)
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
            val_logits = predict_logits(model, val_split.x, 512, use_bf16)
            val_y = torch.from_numpy(val_split.y)
            final = {
                "train/loss": round(loss_sum / seen, 6),
                "train/acc": round(correct / seen, 6),
                "val/loss": round(float(nn.functional.cross_entropy(val_logits, val_y)), 6),
                "val/acc": round(float((val_logits.argmax(1) == val_y).float().mean()), 6),
            }
            for name, value in final.items():
                live.log_metric(name, value)
            live.next_step()
    checkpoint = {
        "arch": cfg.model,
        "classes": meta["classes"],
        "image_size": [meta["height"], meta["width"]],
        "channels": meta["channels"],
        "norm": norm,
        "state_dict": model.state_dict(),
        "bf16": use_bf16,
    }
    final["epochs"] = cfg.epochs
    return checkpoint, final


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint written by :func:`train` (never unpickles code)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = {"channels": checkpoint["channels"], "classes": checkpoint["classes"],
            "height": checkpoint["image_size"][0], "width": checkpoint["image_size"][1]}
    model = make_model(checkpoint["arch"], meta, checkpoint["norm"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model, checkpoint
