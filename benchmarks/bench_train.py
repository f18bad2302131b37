"""Benchmark training (issue 9) on 2 cores, with the baselines measured in the same run.

1. The headline: a fresh clone of the project runs the whole `dvc repro` from the 50,000-image
   CIFAR-10 archive (../shared/data/cifar10-train.tar.gz, pinned by its sha256) with the default
   model; validate holds out 10,000 images as the test split (test_fraction 0.2); mirrored images
   are valid (augment.hflip=true). Prints each stage's time, each epoch's val accuracy against the
   training wall time, the final test accuracy and the train stage's peak memory.
2. Throughput on the arrays that run built: training images per second through our data path
   (memory-mapped batch read + on-the-batch flip/translate + step) for the default model and for
   the seed's LeNet, against the seed's loop (a Dataset of PIL images, ToTensor + Normalize,
   DataLoader batch 4, LeNet, SGD), all in this process.

Run it alone on the machine (it times CPU work): python benchmarks/bench_train.py
Options: --epochs N (default: params.yaml), --skip-repro DIR (reuse a clone), --keep.
The archive is needed (the test suite never uses it); without it this script says so and stops.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import PROJECT, bench_env, copy_project, set_params

ARCHIVE = next((p for p in [Path(os.environ.get("IMGPIPE_CIFAR_ARCHIVE", "/nonexistent")),
                             *(base / "shared" / "data" / "cifar10-train.tar.gz" for base in PROJECT.parents)]
                if p.exists()), PROJECT.parent / "shared" / "data" / "cifar10-train.tar.gz")
ARCHIVE_SHA256 = "ea6149e4f78ff32b36d472de8848d320f55fec932fa77fd96e6173ca6d9b65b2"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=bench_env(PYTHONPATH=""), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def clone(dest: Path, overrides: dict) -> Path:
    copy_project(dest)
    set_params(dest, overrides)
    run(dest, "git", "init", "-q", "-b", "main")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", "bench")
    return dest


def headline(work: Path, epochs: int | None) -> Path:
    overrides = {"download.source": str(ARCHIVE), "download.sha256": ARCHIVE_SHA256,
                 "validate.test_fraction": 0.2}  # augment.hflip auto: on for this photo source
    if epochs:
        overrides["train.epochs"] = epochs
    repo = clone(work / "cifar", overrides)
    print(f"headline: dvc repro from {ARCHIVE.name} (50,000 images; 10,000 held out as test)", flush=True)
    times = {}
    started = time.perf_counter()
    out = ""
    for stage in ["download", "labels", "preprocess", "validate", "card", "augment", "train", "crossval", "evaluate"]:
        t0 = time.perf_counter()
        proc = run(repo, "dvc", "repro", "-s", stage)
        times[stage] = time.perf_counter() - t0
        out += proc.stdout + proc.stderr
        print(f"  {stage:<10} {times[stage]:7.1f} s", flush=True)
    total = time.perf_counter() - started
    print(f"  whole dvc repro: {total:.1f} s ({total / 60:.1f} min)")
    elapsed = 0.0
    print("  epoch  train wall (s)  val acc")
    for m in re.finditer(r"train: epoch (\d+)/(\d+) .*val acc ([0-9.]+) .* ([0-9.]+)s", out):
        elapsed += float(m.group(4))
        print(f"  {m.group(1):>5}  {elapsed:14.1f}  {float(m.group(3)):.4f}")
    import json

    ev = json.loads((repo / "metrics" / "eval.json").read_text())
    rss = re.search(r"peak_rss_mib: (\d+)", out)
    print(f"  test accuracy (10,000 held out, flip TTA): {ev['accuracy']:.4f}; "
          f"train stage peak RSS: {rss.group(1) if rss else '?'} MiB; training wall {elapsed:.0f} s")
    return repo


def cpu_flags() -> str:
    """The CPU flags that decide the precision paths: avx2, avx512f, avx512_bf16, amx_*."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return "cpu flags: unknown (no /proc/cpuinfo)"
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    return "cpu flags: " + " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)


def _throughput(step, batches, min_seconds: float = 20.0) -> float:
    seen, started = 0, time.perf_counter()
    for i, (xb, yb) in enumerate(batches()):
        step(xb, yb)
        seen += len(yb)
        if i >= 2 and time.perf_counter() - started > min_seconds:
            break
    return seen / (time.perf_counter() - started)


def throughput(augmented: Path) -> None:
    import numpy as np
    import torch
    from torch import nn

    sys.path.insert(0, str(PROJECT))
    from imgpipe.contracts import load_augmented_meta
    from imgpipe.inference import make_model
    from imgpipe.params.base import load
    from imgpipe.params.train import TrainParams
    from imgpipe.storedsplit import load_split
    from imgpipe.train import data as tdata
    from imgpipe.train.loop import make_optimizer

    torch.set_num_threads(os.cpu_count() or 1)
    meta, norm = load_augmented_meta(augmented)
    train = load_split(augmented, "train", augmented.parent / "preprocessed")  # the clone's, not the cwd's
    cfg = load("train", TrainParams, PROJECT / "params.yaml")
    from imgpipe.torchenv import autocast, bf16_supported, mixed_precision
    from imgpipe.train.recipes import resolve_recipe, resolve_scale

    cfg = resolve_scale(resolve_recipe(cfg), len(train.y))
    cpu = torch.device("cpu")
    print(f"throughput on {len(train.y)} train images ({meta['height']}x{meta['width']}x{meta['channels']}), "
          f"{torch.get_num_threads()} threads; {cpu_flags()}; oneDNN native bf16: {bf16_supported()}; "
          f"train.bf16={cfg.bf16} runs {mixed_precision(cpu, cfg.bf16)[1]} here")

    def ours(arch: str, options: dict, batch: int, lr: float, bf16: bool = False):
        model = make_model(arch, meta, norm, options)
        c = cfg.model_copy(update={"model": arch, "lr": lr, "width": options.get("width", 0)})
        opt = make_optimizer(model, c)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=c.label_smoothing)
        gen = tdata.batch_generator(0, 0)
        model.train()

        def batches():
            for idx in tdata.epoch_batches(len(train.y), batch, 0, 0):
                xb, yb = tdata.read_batch(train, idx)
                yield tdata.flip_translate_batch(xb, gen, True, 2), yb

        def step(xb, yb):
            with autocast(cpu, "bf16" if bf16 else "fp32"):
                logits = model(xb)
            loss = loss_fn(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return _throughput(step, batches)

    def seed_loop() -> float:
        # The seed tutorial: PIL images -> ToTensor -> Normalize, DataLoader batch 4, LeNet, SGD.
        import torchvision.transforms as T
        from PIL import Image

        from imgpipe.models.lenet import LeNet

        tf = T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

        class Images(torch.utils.data.Dataset):
            def __len__(self):
                return len(train.y)

            def __getitem__(self, i):
                return tf(Image.fromarray(np.asarray(train.x[i]))), int(train.y[i])

        loader = torch.utils.data.DataLoader(Images(), batch_size=4, shuffle=True, num_workers=2)
        net = LeNet(meta["channels"], len(meta["classes"]), (meta["height"], meta["width"]))
        opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()

        def step(xb, yb):
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()

        return _throughput(step, lambda: iter(loader))

    width = {"width": cfg.width} if cfg.model == "airbench" and cfg.width else {}
    seed = seed_loop()
    lenet = ours("lenet", {}, 512, 0.05)
    default = ours(cfg.model, width, cfg.batch_size, cfg.lr)
    default_bf16 = ours(cfg.model, width, cfg.batch_size, cfg.lr, bf16=True)
    print(f"  seed loop (LeNet, DataLoader batch 4, ToTensor): {seed:8.0f} img/s")
    print(f"  LeNet through our data path (batch 512):           {lenet:8.0f} img/s  ({lenet / seed:.1f}x the seed loop)")
    print(f"  default {cfg.model} (width {cfg.width}) batch {cfg.batch_size}, fp32:  {default:8.0f} img/s")
    kind = "native" if bf16_supported() else "EMULATED (no bf16 units: expect slower)"
    print(f"  default {cfg.model} batch {cfg.batch_size}, bf16 autocast ({kind}): {default_bf16:8.0f} img/s "
          f"({default_bf16 / default:.2f}x fp32)")
    print(f"  this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--skip-repro", type=Path, default=None, help="reuse the clone of an earlier run")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not ARCHIVE.exists():
        sys.exit(f"{ARCHIVE}: not found; this benchmark needs the shared CIFAR-10 archive")
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        repo = args.skip_repro or headline(work, args.epochs)
        throughput(repo / "data" / "augmented")
    finally:
        print(f"load after: {os.getloadavg()[0]:.2f}; work dir {work if args.keep else '(removed)'}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
