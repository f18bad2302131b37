"""The training loop: seeded PyTorch over the augmented, memory-mapped arrays, free of file side effects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imgpipe import torchenv
from imgpipe.contracts import load_augmented_meta, load_split
from imgpipe.inference import make_model, predict_logits
from imgpipe.params.train import TrainParams
from imgpipe.training.checkpoint import model_checkpoint


def _optimizer(model: nn.Module, cfg: TrainParams) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def train(augmented_dir: Path, cfg: TrainParams, log_epoch: Callable[[dict], None] | None = None,
          progress: bool = True) -> tuple[dict, dict]:
    """Train; return ``(checkpoint, final metrics)``. The checkpoint loads with ``weights_only=True``.

    ``log_epoch`` receives each epoch's metrics (the stage passes DVCLive); the loop itself writes
    no files, so cross-validation or DDP can call it.
    """
    from tqdm import tqdm

    torchenv.configure(cfg.threads, cfg.seed)
    meta, norm = load_augmented_meta(augmented_dir)
    train_split, val_split = load_split(augmented_dir, "train"), load_split(augmented_dir, "val")
    model = make_model(cfg.model, meta, norm)
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = -(-len(train_split.y) // cfg.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.25
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    use_bf16 = cfg.bf16 and torchenv.bf16_supported()
    final: dict = {}
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
        if log_epoch is not None:
            log_epoch(final)
    checkpoint = model_checkpoint(model, cfg.model, meta, norm, use_bf16)
    final["epochs"] = cfg.epochs
    return checkpoint, final
