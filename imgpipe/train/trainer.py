"""The train stage's logic: data + model + resume checkpoint + DVCLive around the pure loop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from imgpipe.errors import PipelineError

log = logging.getLogger("imgpipe")

# The code whose change makes an old resume checkpoint unusable (hashed into the run key).
CODE = [Path(__file__).parent, Path(__file__).parents[1] / "models", Path(__file__).parents[1] / "inference.py",
        Path(__file__).parents[1] / "torchenv.py"]


def _sigterm(signum, frame):  # `kill <pid>`, a queue worker's stop: end like Ctrl-C
    raise KeyboardInterrupt


def model_options(cfg) -> dict:
    options = {}
    if cfg.width and cfg.model == "airbench":  # the other models have fixed widths
        options["width"] = cfg.width
    if cfg.model == "resnet18" and cfg.freeze_backbone:
        options["freeze_backbone"] = True
    return options


def load_pretrained(model, cfg, download_cfg) -> str:
    """Fetch (or read) and verify ``train.pretrained``, then load it into the torchvision model."""
    from imgpipe.download.fetch import fetch_verified
    from imgpipe.train.checkpoint import load_weights_file

    if cfg.model != "resnet18":
        raise PipelineError(f"train.pretrained is set but train.model={cfg.model} takes no pretrained weights "
                            "(use resnet18)")
    path, result, _ = fetch_verified(cfg.pretrained, download_cfg, sha256=cfg.pretrained_sha256 or None)
    state = load_weights_file(path)
    try:
        model[-1].load_pretrained(state, str(cfg.pretrained))
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    return result.sha256


def _epoch_line(state, epochs: int, seconds: float) -> str:
    r = state.history[-1]
    return (f"train: epoch {state.epoch}/{epochs}  loss {r['train/loss']:.4f}  acc {r['train/acc']:.4f}  "
            f"val loss {r['val/loss']:.4f}  val acc {r['val/acc']:.4f}  lr {r['lr_last']:.4g}  {seconds:.1f}s")


def preprocess_record(preprocess_cfg) -> dict | None:
    return None if preprocess_cfg is None else preprocess_cfg.model_input_record()


def previous_outputs_note(paths) -> str:
    """What is left of the previous run's model and metrics, truthfully: this code never touches
    them before success, but `dvc repro` deletes a stage's outputs before it starts the stage."""
    cached = [Path(paths.model), Path(paths.train_log) / "plots"]  # in DVC's cache
    in_git = [Path(paths.train_log) / "metrics.json"]  # cache: false, tracked by git
    gone_cached = [str(p) for p in cached if not p.exists()]
    gone_git = [str(p) for p in in_git if not p.exists()]
    if not gone_cached and not gone_git:
        return "the previous model and metrics were left untouched"
    commands = ([f"dvc checkout {' '.join(gone_cached)}"] if gone_cached else []) + \
               ([f"git checkout -- {' '.join(gone_git)}"] if gone_git else [])
    return (f"not in the workspace: {', '.join(gone_cached + gone_git)} (`dvc repro` removes a stage's outputs "
            f"before it runs it); `{' && '.join(commands)}` brings back the last committed ones")


def train_model(paths, cfg, download_cfg=None, preprocess_cfg=None) -> tuple[dict, dict]:
    """Train (resuming a matching checkpoint); return ``(model checkpoint, final metrics)``.

    Under ``torchrun`` every rank calls this; rank 0 alone logs and writes files. Returns
    ``(None, final)`` on the other ranks.
    """
    import torch
    from tqdm import tqdm

    from imgpipe import torchenv
    from imgpipe.contracts import PREPROCESS_INFO_FILE, SHARDS_DIR, load_augmented_meta
    from imgpipe.inference import make_model
    from imgpipe.storedsplit import load_split
    from imgpipe.train import checkpoint as ckpt
    from imgpipe.train import distributed
    from imgpipe.train.live import EpochLog
    from imgpipe.train.loop import LoopState, fit
    from imgpipe.train.recipes import resolve_recipe, resolve_scale

    cfg = resolve_recipe(cfg)  # the model's recipe for "auto" keys; the resume key sees the values
    dist = distributed.setup()
    try:
        torchenv.configure(cfg.threads, cfg.seed, dist.device)
        meta, norm = load_augmented_meta(paths.augmented)
        flip = bool(meta.get("hflip", False))  # augment.hflip, recorded by the augment stage
        train_split = load_split(paths.augmented, "train", paths.preprocessed)
        val_split = load_split(paths.augmented, "val", paths.preprocessed)
        cfg = resolve_scale(cfg, len(train_split.y))  # "auto" width/epochs; the resume key sees the values
        options = model_options(cfg)
        try:
            model = make_model(cfg.model, meta, norm, options)
        except ValueError as exc:
            raise PipelineError(f"train.model={cfg.model}: {exc}") from None
        pretrained_sha = load_pretrained(model, cfg, download_cfg) if cfg.pretrained else ""
        if dist.is_main:  # after the model is built: a refused model stays a one-line failure
            log.info("train: %s%s, %d epochs on %d train images", cfg.model,
                     f" width {cfg.width}" if "width" in options else "", cfg.epochs, len(train_split.y))
        model = model.to(dist.device)
        amp, precision = torchenv.mixed_precision(dist.device, cfg.bf16)
        mode = torchenv.precision_mode(dist.device, cfg.bf16)

        # CPU weights depend on the thread count (reduction order), so the key holds the count used.
        # The data: augment's indexes and copies, and the preprocessed shards they point into.
        parts = ckpt.run_key_parts(cfg.model_dump(mode="json"), paths.augmented, CODE,
                                   more_inputs=(Path(paths.preprocessed) / SHARDS_DIR,
                                                Path(paths.preprocessed) / PREPROCESS_INFO_FILE),
                                   extra={"flip": flip, "world": dist.world, "pretrained": pretrained_sha,
                                          "precision": mode, "device": dist.device.type,
                                          "threads": torch.get_num_threads()})
        key = ckpt.key_of(parts)
        ckpt_dir = Path(cfg.checkpoint_dir)
        ckpt_path = ckpt.path_for(ckpt_dir, key)
        if dist.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            for old, why in ckpt.discard_stale(ckpt_dir, key, parts):
                log.info("train: discarded the checkpoint %s (not resumed: %s)", old, why)
        dist.barrier()
        saved = ckpt.load(ckpt_path)
        state, opt_state = None, None
        if saved is not None:
            model.load_state_dict(saved["model"])
            state = LoopState(**saved["loop"])
            opt_state = saved["optimizer"]
            torch.set_rng_state(saved["rng"])
            if dist.device.type == "cuda" and saved.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(saved["cuda_rng"], dist.device)
            if dist.is_main:
                log.info("train: resuming from %s after epoch %d/%d", ckpt_path, state.epoch, cfg.epochs)
        live = EpochLog(ckpt_dir / f"live-{key}", state.history if state else []) if dist.is_main else None
        kill_after = int(os.environ.get("IMGPIPE_TRAIN_KILL_AFTER_EPOCH", "0"))  # test hook
        tty = sys.stderr.isatty()
        bar = None
        started = [time.perf_counter()]

        def on_batch(n: int) -> None:
            if bar is not None:
                bar.update(n)

        def on_epoch(st, mdl, optimizer) -> None:
            nonlocal bar
            if dist.is_main:
                live.log(st.history[-1])
                payload = {"key": key, "model": mdl.state_dict(), "optimizer": optimizer.state_dict(),
                           "loop": {"epoch": st.epoch, "step": st.step, "history": st.history, "ema": st.ema,
                                    "best": st.best, "stopped_early": st.stopped_early},
                           "rng": torch.get_rng_state(), "live_step": len(st.history), "key_parts": parts,
                           "cuda_rng": torch.cuda.get_rng_state(dist.device) if dist.device.type == "cuda" else None}
                ckpt.save(ckpt_path, payload)
                line = _epoch_line(st, cfg.epochs, time.perf_counter() - started[0])
                if bar is not None:
                    bar.close()
                    bar = None
                print(line, file=sys.stderr, flush=True)
            dist.barrier()
            if kill_after and st.epoch == kill_after:
                os.kill(os.getpid(), getattr(signal, os.environ.get("IMGPIPE_TRAIN_KILL_SIGNAL", "SIGKILL")))
            started[0] = time.perf_counter()
            if tty and dist.is_main and st.epoch < cfg.epochs:
                bar = tqdm(total=len(train_split.y) // dist.world, desc=f"epoch {st.epoch + 1}/{cfg.epochs}",
                           unit="img", leave=False)

        if tty and dist.is_main:
            first = state.epoch if state else 0
            bar = tqdm(total=len(train_split.y) // dist.world, desc=f"epoch {first + 1}/{cfg.epochs}",
                       unit="img", leave=False)
        previous = signal.signal(signal.SIGTERM, _sigterm)
        try:
            state = fit(model, train_split, val_split, cfg, flip=flip, device=dist.device, dist=dist,
                        state=state, optimizer_state=opt_state, on_epoch=on_epoch, on_batch=on_batch)
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            saved_epochs = (ckpt.load(ckpt_path) or {}).get("live_step", 0)
            raise PipelineError(f"interrupted; {saved_epochs}/{cfg.epochs} epochs are saved in {ckpt_path}: "
                                f"run the stage again to resume; {previous_outputs_note(paths)}") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        final = dict(state.history[-1]) if state.history else {}
        final["epochs"] = state.epoch
        if state.stopped_early and state.best is not None:
            final["best_epoch"] = state.best["epoch"]
        if not dist.is_main:
            return None, final
        live.publish(paths.train_log)
        checkpoint = ckpt.model_checkpoint(model, cfg.model, meta, norm, options, precision=precision,
                                           bf16=bool(mode == "bf16" and dist.device.type == "cpu"),
                                           tta=bool(flip and cfg.tta), preprocess=preprocess_record(preprocess_cfg))
        return checkpoint, {**final, "_resume_checkpoint": str(ckpt_path)}
    finally:
        dist.close()
