"""Predict throughput and evaluate-stage time on real CIFAR-10 photographs.

    python benchmarks/bench_predict.py [--images 10000] [--repeats 2]

Data: the first N (sorted) of the 10,000 JPEGs in ``shared/data/cifar10-dev.tar.gz`` (found next
to the repository or any folder above it), else N generated 32x32 JPEGs. The model is the
default LeNet for 32x32 RGB with seeded random weights: throughput does not depend on what the
weights learned. Everything runs in this one process and its children, on all cores.

1. ``imgpipe predict`` on the N files, in process (``collect_inputs`` -> ``predict_inputs`` ->
   ``write_csv``: listing, reading, decoding with the preprocess decoder, batches of 512, softmax,
   CSV with 10 probabilities per row), and as the command (``python -m imgpipe.cli predict``,
   including interpreter start and the torch import).
2. The naive loop, in the same run: per file ``PIL.Image.open(...).convert("RGB")``, torchvision
   ``ToTensor``, normalise, the network on one image, softmax, argmax.
   Both paths' predicted labels are compared (same pixels, same weights: they must agree).
3. The evaluate stage (``python -m stages.evaluate`` in a scratch project) on N test images made
   from the same decoded pixels: scores, per-class table, reliability bins and the five PNGs;
   wall time of the command and the stage's own "done in" time, with and without flip TTA.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def shared_tar() -> Path | None:
    for parent in REPO.parents:
        candidate = parent / "shared" / "data" / "cifar10-dev.tar.gz"
        if candidate.is_file():
            return candidate
    return None


def prepare_images(folder: Path, n: int) -> str:
    """N JPEGs in ``folder/<class>/``; returns where they came from."""
    tar_path = shared_tar()
    if tar_path:
        with tarfile.open(tar_path) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                             key=lambda m: m.name)[:n]
            for m in members:
                dest = folder / Path(m.name).parent.name / Path(m.name).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(m).read())
        return f"{len(members)} CIFAR-10 JPEGs from {tar_path}"
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        dest = folder / CLASSES[i % 10] / f"{i:05d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=75)
        dest.write_bytes(buffer.getvalue())
    return f"{n} generated 32x32 JPEGs (no shared CIFAR-10 archive found)"


def save_model(path: Path) -> None:
    import torch

    from imgpipe.inference import make_model
    from imgpipe.train.checkpoint import model_checkpoint

    torch.manual_seed(0)
    meta = {"classes": CLASSES, "channels": 3, "height": 32, "width": 32}
    norm = {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model_checkpoint(make_model("lenet", meta, norm), "lenet", meta, norm, False), path)


def ours(folder: Path, model_path: Path, out: Path) -> tuple[float, list[str]]:
    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.predict import collect_inputs, load_model, predict_inputs, write_csv

    model, checkpoint = load_model(str(model_path))
    cfg = PreprocessParams()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        inputs = collect_inputs([str(folder)], Path(scratch))
        preds = list(predict_inputs(model, inputs, cfg, 512, progress=False))
    write_csv(str(out), preds, checkpoint["classes"])
    elapsed = time.perf_counter() - start
    return elapsed, [CLASSES[int(p.probs.argmax())] for p in preds]


def naive(folder: Path, model_path: Path) -> tuple[float, list[str]]:
    import torch
    from PIL import Image
    from torchvision.transforms import ToTensor

    from imgpipe.inference import load_checkpoint

    model, checkpoint = load_checkpoint(model_path)
    net = model[1]  # the network without the project's uint8 Normalize: the naive loop normalises itself
    mean = torch.tensor(checkpoint["norm"]["mean"]).view(3, 1, 1)
    std = torch.tensor(checkpoint["norm"]["std"]).view(3, 1, 1)
    to_tensor = ToTensor()
    files = sorted(p for p in folder.rglob("*.jpg"))
    labels = []
    start = time.perf_counter()
    with torch.no_grad():
        for f in files:
            x = (to_tensor(Image.open(f).convert("RGB")) - mean) / std
            probs = torch.softmax(net(x.unsqueeze(0)), 1)
            labels.append(CLASSES[int(probs.argmax())])
    return time.perf_counter() - start, labels


def decoded(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.preprocess.decode import to_model_pixels

    files = sorted(folder.rglob("*.jpg"))
    cfg = PreprocessParams()
    x = np.stack([to_model_pixels(f.read_bytes(), cfg) for f in files])
    y = np.array([CLASSES.index(f.parent.name) for f in files], dtype=np.int64)
    return x, y, [f.relative_to(folder).as_posix() for f in files]


def evaluate_stage(work: Path, model_path: Path, x, y, ids, tta: bool) -> tuple[float, float]:
    import pandas as pd
    import yaml

    from imgpipe.augment import index_rows
    from imgpipe.io import write_json, write_parquet
    from imgpipe.preprocess.shards import ShardWriter

    project = work / ("eval-tta" if tta else "eval")
    aug, pre = project / "data" / "augmented", project / "data" / "preprocessed"
    aug.mkdir(parents=True)
    # A raw-pixel preprocessed store and augment's test index into it (the evaluate stage's inputs).
    writer = ShardWriter(pre, x.shape[1:], 1 << 30)
    shard, offset = writer.add(x)
    write_json(pre / "info.json", {"size": list(x.shape[1:3]), "channels": x.shape[3], "store": "pixels",
                                   "shards": writer.close()})
    rows = pd.DataFrame({"item_id": ids, "source_path": ids, "label_index": y, "shard": shard, "shard_offset": offset})
    write_parquet(index_rows(rows, 0), aug / "test_items.parquet")
    (project / "models").mkdir()
    (project / "models" / "model.pt").write_bytes(model_path.read_bytes())
    (project / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"tta": tta}}))
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stages.evaluate"], cwd=project, env=env,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    own = float(re.search(r"evaluate: done in ([0-9.]+)s", proc.stderr).group(1))
    return wall, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs of each throughput path")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import torch

    results: dict = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                     "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        folder = work / "images"
        results["data"] = prepare_images(folder, args.images)
        n = sum(1 for _ in folder.rglob("*.jpg"))
        model_path = work / "model.pt"
        save_model(model_path)
        ours_times, naive_times = [], []
        for _ in range(args.repeats):
            t, ours_labels = ours(folder, model_path, work / "predictions.csv")
            ours_times.append(t)
            t, naive_labels = naive(folder, model_path)
            naive_times.append(t)
        agree = float(np.mean([a == b for a, b in zip(ours_labels, naive_labels, strict=True)]))
        env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgpipe.cli", "predict", str(folder), "--model", str(model_path),
                        "--out", str(work / "cli.csv"), "--classes", "none"], cwd=work, env=env, check=True,
                       capture_output=True)
        cli = time.perf_counter() - start
        x, y, ids = decoded(folder)
        eval_plain = evaluate_stage(work, model_path, x, y, ids, tta=False)
        eval_tta = evaluate_stage(work, model_path, x, y, ids, tta=True)
    best_ours, best_naive = min(ours_times), min(naive_times)
    results.update({
        "images": n,
        "predict_in_process_s": round(best_ours, 3),
        "predict_img_per_s": round(n / best_ours),
        "naive_s": round(best_naive, 3),
        "naive_img_per_s": round(n / best_naive),
        "speedup_vs_naive": round(best_naive / best_ours, 2),
        "labels_agree_with_naive": agree,
        "predict_command_wall_s": round(cli, 2),
        "predict_command_img_per_s": round(n / cli),
        "evaluate_stage_wall_s": round(eval_plain[0], 2),
        "evaluate_stage_own_s": eval_plain[1],
        "evaluate_stage_tta_wall_s": round(eval_tta[0], 2),
        "evaluate_stage_tta_own_s": eval_tta[1],
        "load_after": os.getloadavg(),
    })
    print(f"data: {results['data']}; {results['cpus']} CPUs, torch threads {results['torch_threads']}")
    print(f"predict (in process, best of {args.repeats}): {best_ours:.2f} s = {n / best_ours:,.0f} img/s")
    print(f"naive PIL + ToTensor + one image at a time: {best_naive:.2f} s = {n / best_naive:,.0f} img/s")
    print(f"speed-up: {best_naive / best_ours:.1f}x; labels agree on {agree:.2%} of images")
    print(f"`imgpipe predict` command, end to end: {cli:.2f} s = {n / cli:,.0f} img/s")
    print(f"evaluate stage on {n} test images: {eval_plain[0]:.2f} s wall ({eval_plain[1]:.1f} s in the stage); "
          f"with flip TTA {eval_tta[0]:.2f} s ({eval_tta[1]:.1f} s)")
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
