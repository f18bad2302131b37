"""The training loop: pure (no files, no logging); the caller gets a callback after each epoch.

One code path for one process and for DDP under ``torchrun``: each rank trains on its shard of
every epoch (``data.epoch_batches``), gradients are averaged by DistributedDataParallel, and the
epoch's metrics are summed over the ranks. Resuming = passing the state saved after an epoch; the
epoch's data order and augmentation draws are derived from ``(seed, epoch)``, so a resumed run
computes exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from imgpipe.errors import PipelineError
from imgpipe.train import data as tdata
from imgpipe.train.schedules import multiplier

# airbench94 constants (see imgpipe/models/airbench.py): weight averaging starts after 30% of the
# steps and runs every 5 steps; the whitening layer's bias trains for the first 30% only.
EMA_START, EMA_EVERY, EMA_BASE, EMA_POW = 0.3, 5, 0.95, 3.0
WHITEN_BIAS_UNTIL = 0.3


@dataclass
class LoopState:
    """Everything a resumed run needs besides the model's weights and the optimiser."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    history: list[dict] = field(default_factory=list)  # per-epoch metrics
    ema: dict | None = None  # weight-averaging state (airbench "lookahead")
    best: dict | None = None  # {"epoch", "score", "state_dict"} for early stopping
    stopped_early: bool = False


class NonFiniteTraining(PipelineError):
    """The loss or the weights stopped being finite numbers: training stops, nothing is written."""


def _non_finite(what: str, epoch: int, step: int, precision: str) -> NonFiniteTraining:
    way_out = ("run in fp32: `dvc exp run -S train.bf16=false` (or IMGPIPE_FORCE_BF16=0)"
               if precision != "fp32" else "lower the learning rate, e.g. `dvc exp run -S train.lr=0.1`")
    return NonFiniteTraining(f"train: {what} is not finite at epoch {epoch}, step {step} (precision: {precision}); "
                             f"no model was written and the previous metrics were not replaced; {way_out}")


def weights_finite(model) -> bool:
    """True when every parameter and buffer (BN statistics included) is finite."""
    import torch

    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.dtype.is_floating_point)


def param_groups(model, lr: float, weight_decay: float, bias_lr_scale: float) -> list[dict]:
    """Parameter groups: BN biases of scale-frozen BNs get ``bias_lr_scale`` x the lr (same absolute
    decay), the whitening bias its own group (switched off later), the rest plain."""
    from torch import nn

    bn_bias, whiten_bias, other = [], [], []
    bn_bias_ids = set()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.weight is not None and not module.weight.requires_grad:
            bn_bias_ids.add(id(module.bias))
    whiten = getattr(_unwrap(model), "whiten", None)
    whiten_id = id(whiten.bias) if whiten is not None and whiten.bias is not None else None
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in bn_bias_ids:
            bn_bias.append(p)
        elif id(p) == whiten_id:
            whiten_bias.append(p)
        else:
            other.append(p)
    groups = [
        {"name": "other", "params": other, "base_lr": lr, "weight_decay": weight_decay},
        {"name": "bn_bias", "params": bn_bias, "base_lr": lr * bias_lr_scale,
         "weight_decay": weight_decay / bias_lr_scale},
        {"name": "whiten_bias", "params": whiten_bias, "base_lr": lr, "weight_decay": weight_decay},
    ]
    return [dict(g, lr=g["base_lr"]) for g in groups if g["params"]]


def _unwrap(model):
    inner = getattr(model, "module", model)  # DDP
    return inner[-1] if hasattr(inner, "__getitem__") and len(inner) else inner  # Sequential(Normalize, net)


def effective_batch(n: int, cfg, world: int = 1) -> int:
    """``cfg.batch_size``, shrunk on small datasets to give ``cfg.min_steps_per_epoch`` steps."""
    return max(min(cfg.batch_size, -(-n // cfg.min_steps_per_epoch)), world, 1)


def make_optimizer(model, cfg, batch: int | None = None):
    """SGD (Nesterov) or AdamW with :func:`param_groups`; the lr scales with ``batch / cfg.batch_size``."""
    import torch

    from imgpipe.train.recipes import resolve_recipe

    cfg = resolve_recipe(cfg)
    lr = cfg.lr * (batch or cfg.batch_size) / cfg.batch_size
    groups = param_groups(model, lr, cfg.weight_decay, cfg.bias_lr_scale)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=lr)


def _set_lr(optimizer, cfg, step: int, total: int) -> float:
    m = multiplier(cfg.schedule, step, total, cfg.warmup)
    for group in optimizer.param_groups:
        frozen = group.get("name") == "whiten_bias" and step >= WHITEN_BIAS_UNTIL * total
        group["lr"] = 0.0 if frozen else group["base_lr"] * m
    return optimizer.param_groups[0]["base_lr"] * m


def _ema_update(model, ema: dict | None, decay: float) -> dict:
    """airbench's lookahead: average the weights, then copy the average back into the model."""
    sd = model.state_dict()
    if ema is None:
        return {k: v.detach().clone() for k, v in sd.items() if v.dtype.is_floating_point}
    for k, avg in ema.items():
        avg.lerp_(sd[k].detach(), 1 - decay)
        sd[k].copy_(avg)
    return ema


def fit(model, train, val, cfg, *, flip: bool, device, dist=None, state: LoopState | None = None,
        optimizer_state: dict | None = None, on_epoch: Callable | None = None,
        on_batch: Callable | None = None) -> LoopState:
    """Train ``model`` (uint8 NHWC in, logits out) for ``cfg.epochs`` epochs from ``state``.

    ``on_epoch(state, model, optimizer)`` runs after every epoch (checkpoint, logging); ``dist`` is a
    :class:`imgpipe.train.distributed.Dist` (None = one process).
    """
    import torch
    from torch import nn

    from imgpipe.inference import predict_logits
    from imgpipe.storedsplit import BatchReader, resolve_workers
    from imgpipe.torchenv import autocast, mixed_precision, precision_mode
    from imgpipe.train.recipes import resolve_recipe, resolve_scale

    cfg = resolve_scale(resolve_recipe(cfg), len(train.y))  # "auto" keys -> the model's and the data's values
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    state = state or LoopState()
    mode = precision_mode(device, cfg.bf16)
    amp, precision = mixed_precision(device, cfg.bf16)
    # fp16 (GPUs without bf16) underflows small gradients without loss scaling; bf16 needs none.
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
    net = dist.wrap(model) if dist is not None and world > 1 else model
    batch = effective_batch(len(train.y), cfg, world)
    optimizer = make_optimizer(model, cfg, batch)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps_per_epoch = len(tdata.epoch_batches(len(train.y), batch, cfg.seed, 0, rank, world))
    total = cfg.epochs * steps_per_epoch
    tta = flip and cfg.tta
    trace = os.environ.get("IMGPIPE_TRAIN_TRACE")  # test hook: record the sample ids each rank sees
    if state.epoch == 0 and hasattr(_unwrap(model), "init_whitening"):
        _init_whitening(model, train, cfg.seed)
    # Encoded stores decode the epoch's batches in worker processes, in the epoch's order; the batch
    # augmentation below stays here, so the weights do not depend on the worker count.
    workers = resolve_workers(cfg.decode_workers, train.x)
    reader = BatchReader(train.x, workers)  # its worker processes end with it, when fit returns
    while state.epoch < cfg.epochs and not state.stopped_early:
        epoch = state.epoch
        gen = tdata.batch_generator(cfg.seed, epoch, rank)
        batches = tdata.epoch_batches(len(train.y), batch, cfg.seed, epoch, rank, world)
        model.train()
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        lr = cfg.lr
        for idx, xb in zip(batches, reader(batches), strict=True):
            lr = _set_lr(optimizer, cfg, state.step, total)
            yb = torch.from_numpy(train.y[idx])
            xb = tdata.flip_translate_batch(xb, gen, flip, cfg.translate)
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with autocast(device, mode):
                logits = net(xb)
            loss = loss_fn(logits.float(), yb)
            loss_value = float(loss.detach())  # one sync per step, also the guard below
            if not np.isfinite(loss_value):
                raise _non_finite(f"the training loss ({loss_value})", epoch + 1, state.step + 1, precision)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            state.step += 1
            if cfg.ema and state.step >= EMA_START * total and state.step % EMA_EVERY == 0:
                decay = (EMA_BASE**EMA_EVERY) * (state.step / total) ** EMA_POW
                state.ema = _ema_update(model, state.ema, decay)
            n = len(idx)
            sums += torch.tensor([loss_value * n, float((logits.argmax(1) == yb).sum()), n],
                                 dtype=torch.float64)
            if on_batch is not None:
                on_batch(n)
            if trace:
                with open(f"{trace}.{rank}", "a") as fh:
                    fh.write(f"{epoch} {' '.join(map(str, idx.tolist()))}\n")
        if state.ema is not None:
            _ema_update(model, state.ema, 1.0)  # the averaged weights at the end of every epoch
        if not weights_finite(model):
            raise _non_finite("a weight", epoch + 1, state.step, precision)
        val_logits = predict_logits(model, val.x[rank::world], 512, bf16=amp, tta=tta, workers=workers)
        val_y = torch.from_numpy(val.y[rank::world])
        val_sums = torch.tensor([
            float(nn.functional.cross_entropy(val_logits, val_y, reduction="sum")) if len(val_y) else 0.0,
            float((val_logits.argmax(1) == val_y).sum()) if len(val_y) else 0.0,
            float(len(val_y)),
        ], dtype=torch.float64)
        if dist is not None and world > 1:
            sums, val_sums = dist.sum(sums), dist.sum(val_sums)
        record = {
            "train/loss": round(float(sums[0] / sums[2]), 6),
            "train/acc": round(float(sums[1] / sums[2]), 6),
            "val/loss": round(float(val_sums[0] / max(val_sums[2], 1)), 6),
            "val/acc": round(float(val_sums[1] / max(val_sums[2], 1)), 6),
            "lr_last": round(lr, 8),  # the epoch's last lr (a metric; `train.lr` is the param: the peak)
        }
        state.history.append(record)
        state.epoch += 1
        if cfg.early_stopping_patience > 0:
            _early_stopping(state, model, record["val/acc"], cfg.early_stopping_patience)
        if on_epoch is not None:
            on_epoch(state, model, optimizer)
    if state.stopped_early and state.best is not None:
        model.load_state_dict(state.best["state_dict"])
    return state


def _early_stopping(state: LoopState, model, score: float, patience: int) -> None:
    if state.best is None or score > state.best["score"]:
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state.best = {"epoch": state.epoch, "score": score, "state_dict": sd}
    elif state.epoch - state.best["epoch"] >= patience:
        state.stopped_early = True


def _init_whitening(model, train, seed: int, count: int = 5000) -> None:
    """airbench: whiten with the patch statistics of (up to) 5,000 training images."""
    import torch

    idx = np.sort(np.random.default_rng([seed, 2**31]).permutation(len(train.y))[:count])
    x = torch.from_numpy(np.ascontiguousarray(train.x[idx]))
    inner = model.module if hasattr(model, "module") else model
    normalize, net = inner[0], inner[-1]
    device = next(net.parameters()).device
    with torch.no_grad():
        net.init_whitening(normalize(x.to(device)))
