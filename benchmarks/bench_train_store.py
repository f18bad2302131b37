"""Training throughput and disk per store, now that augment indexes the images instead of copying them.

For each image size (``--sizes``, default 32 64 128 224) it generates ``--images`` photo-like images
(a smooth random colour field, bicubic-upscaled, plus sensor-like noise, so JPEG sizes resemble
photographs'; not CIFAR upscaled, which compresses unrealistically well), writes a preprocessed
store of each kind (``pixels``, ``jpeg`` at quality 90, ``png``) with the real shard writers, runs
the real augment build (``imgpipe.augment.build``, 0 offline copies) and measures, in the same run:

- baseline: the old layout, a raw-pixel ``train_x.npy`` memory-mapped, one fancy-index read per batch;
- each store through ``imgpipe.storedsplit`` (``load_split`` + ``BatchReader``), decoding in 0 and in
  ``--workers`` DataLoader worker processes;

both for reading alone (read + batch flip/translate, images/s) and for training (LeNet, SGD,
batch ``--batch``, the same step as the train loop; a small model, so the data path shows).
Then bytes per image in ``data/`` (preprocessed + augmented; DVC's cache holds the same files once
more) per store, against the old layout (which wrote every image again into ``{split}_x.npy``),
extrapolated to ImageNet-1k's 1.28 million images.

    nice python benchmarks/bench_train_store.py --images 512 --steps 6
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

IMAGENET = 1_281_167
STORES = ("pixels", "jpeg", "png")


def photos(n: int, size: int, seed: int = 0) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        im = np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
        out[i] = np.clip(im + rng.normal(0, 6, im.shape), 0, 255).astype(np.uint8)
    return out


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def project(work: Path, images: np.ndarray, store: str) -> tuple[Path, Path]:
    """data/preprocessed (the store) and data/augmented (the real augment build) under ``work``."""
    from imgpipe.augment import build
    from imgpipe.params.augment import AugmentParams

    from factories import split_frame, write_store

    pre, aug = work / "preprocessed", work / "augmented"
    shard, offset, _ = write_store(pre, images, store, quality=90)
    n = len(images)
    splits = ["train"] * (n - 16) + ["val"] * 8 + ["test"] * 8
    labels = np.arange(n) % 10
    aug.mkdir(parents=True)
    build(split_frame([f"i{k}.jpg" for k in range(n)], labels, splits, shard, offset), pre, aug,
          AugmentParams(copies=0, hflip=True), [f"c{k}" for k in range(10)])
    return pre, aug


def measure(x, y, size: int, batch: int, steps: int, workers: int, train: bool) -> tuple[float, float]:
    """Images per second of wall time, and per CPU-second of this process (all its threads; not the
    decode workers'), over ``steps`` batches after one warm-up batch. On a shared machine the
    wall figure follows the load; the CPU figure (what one image costs) much less."""
    import torch
    from torch import nn

    from imgpipe.models.lenet import LeNet
    from imgpipe.storedsplit import BatchReader
    from imgpipe.train import data as tdata

    order = tdata.epoch_batches(len(y), batch, 0, 0)
    batches = (order * (steps // len(order) + 2))[: steps + 1]
    net = LeNet(3, 10, (size, size))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    gen = tdata.batch_generator(0, 0)
    seen, start, cpu = 0, None, None
    with BatchReader(x, workers) as read:
        for i, (idx, xb) in enumerate(zip(batches, read(batches), strict=True)):
            if i == 1:
                start, cpu = time.perf_counter(), time.process_time()
            xb = tdata.flip_translate_batch(xb, gen, True, 2)
            if train:
                loss = loss_fn(net(xb.permute(0, 3, 1, 2).float() / 255), torch.from_numpy(y[idx]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if i >= 1:
                seen += len(idx)
    return seen / (time.perf_counter() - start), seen / max(time.process_time() - cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 224])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    # One torch thread by default: on a shared machine OpenMP threads spin and the figures follow
    # the load; with one the CPU-second figures say what an image costs.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from imgpipe.storedsplit import load_split

    torch.set_num_threads(args.threads)
    print(f"{args.images} images per size, batch {args.batch}, {args.steps} timed steps, LeNet; "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads; load {os.getloadavg()[0]:.1f}")
    disk = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            images = photos(args.images, size)
            print(f"\n{size}x{size}: images/s, reading (read + flip/translate) | training (LeNet step); "
                  "[per CPU-second of the training process]")
            old = Path(tmp) / f"old-{size}.npy"
            np.save(old, images[: args.images - 16])
            base_x = np.load(old, mmap_mode="r")
            base_y = (np.arange(len(base_x)) % 10).astype(np.int64)
            (base_read, base_read_cpu) = measure(base_x, base_y, size, args.batch, args.steps, 0, False)
            (base_train, base_train_cpu) = measure(base_x, base_y, size, args.batch, args.steps, 0, True)
            print(f"  raw train_x.npy (old layout)    {base_read:9.0f} | {base_train:7.0f}   "
                  f"[{base_read_cpu:9.0f} | {base_train_cpu:7.0f}]")
            for store in STORES:
                pre, aug = project(Path(tmp) / f"{store}-{size}", images, store)
                split = load_split(aug, "train", pre)
                for workers in ([0] if store == "pixels" else [0, args.workers]):
                    r, r_cpu = measure(split.x, split.y, size, args.batch, args.steps, workers, False)
                    t, t_cpu = measure(split.x, split.y, size, args.batch, args.steps, workers, True)
                    print(f"  {store:6s} store, {workers} workers       {r:9.0f} | {t:7.0f}   "
                          f"[{r_cpu:9.0f} | {t_cpu:7.0f}]   wall {r / base_read:.2f}x | {t / base_train:.2f}x, "
                          f"CPU {r_cpu / base_read_cpu:.2f}x | {t_cpu / base_train_cpu:.2f}x the raw array")
                per = (tree_bytes(pre) + tree_bytes(aug)) / args.images
                disk.append((size, store, tree_bytes(pre) / args.images, tree_bytes(aug) / args.images, per))
    print("\nbytes per image in data/ (preprocessed + augmented, augment.copies 0); DVC's cache holds "
          "the same once more")
    print(f"  {'size':>5} {'store':7} {'preproc.':>10} {'augmented':>10} {'total':>10} {'old total':>10} "
          f"{'1.28M now':>10} {'1.28M old':>10}")
    for size, store, pre_b, aug_b, per in disk:
        old = pre_b + size * size * 3  # the old augment wrote every image again as raw pixels
        print(f"  {size:5d} {store:7} {pre_b:10.0f} {aug_b:10.1f} {per:10.0f} {old:10.0f} "
              f"{per * IMAGENET / 1e9:8.1f}GB {old * IMAGENET / 1e9:8.1f}GB")


if __name__ == "__main__":
    main()
