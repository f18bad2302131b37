"""The training headline on whatever device torch picks (CUDA when visible): the 50,000 CIFAR-10
images of ../shared/data/cifar10-train.tar.gz, 10,000 held out as test, the shipped train params
(the model's recipe, hflip on as for photos), trained through imgpipe's loop (not `dvc repro`:
decoding is done here in memory so a lent GPU's minutes go to training).

Prints and writes ($OUT/headline.json when OUT is set): device, precision, epochs, training
seconds, img/s, test accuracy (with flip TTA). Options: --epochs, --width, --archive, --limit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def find_archive(given: str | None) -> Path:
    candidates = [given, os.environ.get("IMGPIPE_CIFAR_ARCHIVE"), PROJECT / "shared/data/cifar10-train.tar.gz",
                  *(p / "shared/data/cifar10-train.tar.gz" for p in PROJECT.parents)]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    sys.exit("gpu_headline: no cifar10-train.tar.gz (pass --archive or set IMGPIPE_CIFAR_ARCHIVE)")


def load_archive(path: Path, limit: int = 0):
    from PIL import Image

    xs, names = [], []
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                data = tar.extractfile(member).read()
                xs.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
                names.append(member.name.split("/")[-2])
                if limit and len(xs) >= limit:
                    break
    classes = sorted(set(names))
    y = np.array([classes.index(n) for n in names], dtype=np.int64)
    return np.stack(xs), y, classes


def main() -> None:
    import torch

    from imgpipe import torchenv
    from imgpipe.contracts import SplitArrays
    from imgpipe.inference import make_model, predict_logits
    from imgpipe.params.base import load
    from imgpipe.params.train import TrainParams
    from imgpipe.train.loop import fit
    from imgpipe.train.recipes import resolve_recipe, resolve_scale

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--width", type=int, default=0)
    parser.add_argument("--archive", default=None)
    parser.add_argument("--limit", type=int, default=0, help="read only this many images (a smoke run)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    x, y, classes = load_archive(find_archive(args.archive), args.limit)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    decode_s = time.perf_counter() - t0
    f = x[train].astype(np.float64) / 255
    norm = {"mean": f.mean((0, 1, 2)).tolist(), "std": f.std((0, 1, 2)).tolist()}
    del f
    cfg = resolve_recipe(load("train", TrainParams, PROJECT / "params.yaml"))
    update = {k: v for k, v in (("epochs", args.epochs), ("width", args.width)) if v}
    cfg = resolve_scale(cfg.model_copy(update=update), len(train))
    device = torchenv.choose_device()
    torchenv.configure(cfg.threads, cfg.seed, device)
    meta = {"classes": classes, "height": 32, "width": 32, "channels": 3}
    model = make_model(cfg.model, meta, norm, {"width": cfg.width} if cfg.model == "airbench" and cfg.width else {})
    model = model.to(device)
    _, precision = torchenv.mixed_precision(device, cfg.bf16)
    train_split, test_split = SplitArrays(x[train], y[train]), SplitArrays(x[test], y[test])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    epochs = []

    def on_epoch(state, mdl, opt):
        epochs.append({"epoch": state.epoch, "seconds": round(time.perf_counter() - started, 2),
                       **state.history[-1]})
        print(f"  epoch {state.epoch}: {epochs[-1]}", flush=True)

    fit(model, train_split, SplitArrays(x[test[:1000]], y[test[:1000]]), cfg, flip=True, device=device,
        on_epoch=on_epoch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - started
    mode = torchenv.precision_mode(device, cfg.bf16)
    logits = predict_logits(model, test_split.x, 1024, bf16=mode == "bf16", tta=cfg.tta)
    accuracy = float((logits.argmax(1).numpy() == test_split.y).mean())
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "precision": precision, "model": cfg.model, "width": cfg.width, "epochs": cfg.epochs,
              "train_images": len(train), "test_images": len(test), "decode_seconds": round(decode_s, 1),
              "train_seconds": round(train_s, 2), "img_per_s": round(len(train) * cfg.epochs / train_s),
              "test_accuracy_tta": round(accuracy, 4), "per_epoch": epochs}
    print(json.dumps({k: v for k, v in result.items() if k != "per_epoch"}, indent=1))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["OUT"]) / f"headline-w{cfg.width}-e{cfg.epochs}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
