"""Preprocess benchmark: throughput against two baselines, peak memory at 10k and 60k images,
and the cost of a no-op ``dvc status`` with a 60k-image dataset in the pipeline.

    python benchmarks/bench_preprocess.py [--workdir DIR] [--repeats 2] [--skip-dvc] [--json out.json]

Data: ``../shared/data/cifar10-dev.tar.gz`` (10,000 32x32 JPEGs, ImageFolder layout) when present,
else 10,000 generated 32x32 JPEGs. The 60k set is the 10k set six times over (hard links), and a
CIFAR-style array layout (``cifar-10-batches-py``, 6 x 10,000 images) built from the same pixels.

Throughput, all on the 10k JPEGs, in one run (best of ``--repeats``):

- bare: ``Image.open(path).load()`` per file in one process: the decoder's own cost (ceiling of
  a single core);
- naive: PIL open + ``torchvision.transforms.ToTensor`` per image into a Python list, one process;
- ours: ``imgpipe.preprocess.pipeline`` with ``workers: 0`` (all cores), in a fresh subprocess, end to
  end: listing, decode, hashes, statistics, shards, parquet. Reported also without the listing
  (``rawdata.list_items``, timed on its own), which is not part of this stage's code.

Memory at 10k and 60k images, in separate sampled runs: the main process's peak RSS (``VmHWM``),
the largest worker's RSS, and the peak sum of PSS over all processes (sampled every 100 ms; PSS
counts pages the forked workers share with the main process once).
``dvc status`` is timed in a throwaway git+dvc repo whose one stage has the 60k raw dir as a dep
and ``data/preprocessed`` as an out, after one ``dvc repro``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_TAR = REPO.parent / "shared" / "data" / "cifar10-dev.tar.gz"
sys.path.insert(0, str(REPO))

N_DEV = 10_000
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CHILD = r"""
import json, sys, time
from pathlib import Path
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.preprocess.pipeline import preprocess_images
from imgpipe.rawdata import list_items
import pandas, pyarrow.parquet, tqdm  # noqa: F401  (imports are not what is measured)

def status_kib(key):
    # VmHWM/VmRSS of this process. Not ru_maxrss: Linux carries that over from the parent
    # across fork+exec, so it would report the benchmark's own peak.
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

raw, out = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
n_listed = len(list_items(raw)) if sys.argv[3] == "files" else 0
listing_s = time.perf_counter() - t0
base_rss = status_kib("VmRSS")
t0 = time.perf_counter()
summary = preprocess_images(raw, out, PreprocessParams(workers=0), progress=False)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "listing_s": listing_s, "summary": summary, "base_rss_kib": base_rss,
                  "main_peak_rss_kib": status_kib("VmHWM")}))
"""

STAGE_SCRIPT = """\
import sys
from pathlib import Path
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.preprocess.pipeline import preprocess_images
preprocess_images(Path("data/raw"), Path("data/preprocessed"), PreprocessParams(workers=0), progress=False)
"""

DVC_YAML = """\
stages:
  preprocess:
    cmd: python run_preprocess.py
    deps:
      - data/raw
      - run_preprocess.py
    outs:
      - data/preprocessed
"""


# --- data --------------------------------------------------------------------------------------


def source_json(layout: str) -> str:
    return json.dumps({"source": "bench", "kind": "path", "layout": layout, "url": None, "final_url": None,
                       "size_bytes": None, "sha256": None, "classes": None, "label_file": None, "extra": {}})


def make_dev_set(dest: Path) -> str:
    """10k 32x32 JPEGs at ``dest/<class>/<NNNN>.jpg``; return where they came from."""
    if SHARED_TAR.exists():
        with tarfile.open(SHARED_TAR) as tf:
            tf.extractall(dest.parent / "extract", filter="data")
        (dest.parent / "extract" / "cifar10-dev").rename(dest)
        return str(SHARED_TAR)
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(N_DEV):
        # Smooth random images (upsampled noise), so JPEG sizes resemble real photos.
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((32, 32), Image.Resampling.BICUBIC)
        path = dest / CLASSES[i % 10] / f"{i // 10:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, format="JPEG", quality=75)
    return "generated (no ../shared/data/cifar10-dev.tar.gz)"


def jpeg_paths(dev: Path) -> list[Path]:
    return sorted(dev.rglob("*.jpg"))


def make_files_raw(raw: Path, dev: Path, copies: int) -> None:
    """A ``files`` layout raw dir: ``copies`` replicas of the dev set, hard-linked."""
    files = raw / "files"
    for path in jpeg_paths(dev):
        rel = path.relative_to(dev)
        for c in range(copies):
            target = files / (f"rep{c}" if copies > 1 else "") / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    (raw / "source.json").write_text(source_json("files"))


def make_cifar_raw(raw: Path, dev: Path) -> None:
    """A CIFAR-10 array layout with 6 x 10k images (the dev pixels in every batch)."""
    import numpy as np
    from PIL import Image

    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in jpeg_paths(dev)])
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    labels = [i % 10 for i in range(len(images))]
    folder = raw / "files" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": data, b"labels": labels, b"filenames": [b"x.png"] * len(labels)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}, protocol=2))
    (raw / "source.json").write_text(source_json("cifar10"))


# --- throughput ----------------------------------------------------------------------------------


def bare_loop(paths: list[Path]) -> float:
    from PIL import Image

    t0 = time.perf_counter()
    for path in paths:
        with Image.open(path) as im:
            im.load()
    return time.perf_counter() - t0


def naive_loop(paths: list[Path]) -> float:
    from PIL import Image
    from torchvision.transforms import ToTensor

    to_tensor = ToTensor()
    t0 = time.perf_counter()
    tensors = []
    for path in paths:
        with Image.open(path) as im:
            tensors.append(to_tensor(im.convert("RGB")))
    elapsed = time.perf_counter() - t0
    assert len(tensors) == len(paths)
    return elapsed


def _descendants(root: int) -> list[int]:
    pids, frontier = [root], [root]
    while frontier:
        pid = frontier.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                pids.append(child)
                frontier.append(child)
    return pids


def tree_memory_kib(root: int) -> dict[int, tuple[int, int]]:
    """(Rss, Pss) of ``root`` and its descendants (the preprocess workers), by pid. Pss splits
    pages shared copy-on-write between the main process and its forked workers, so the sum of
    Pss is the memory the run really holds."""
    out = {}
    for pid in _descendants(root):
        fields = {}
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    fields[key] = int(rest.split()[0])
        except (OSError, ValueError):
            continue
        if len(fields) == 2:
            out[pid] = (fields["Rss"], fields["Pss"])
    return out


def run_ours(raw: Path, out: Path, layout: str, sample: bool = False) -> dict:
    """Run preprocess in a fresh process. With ``sample``, poll the memory of it and its workers
    every 100 ms (kept off for throughput runs: polling costs CPU on a 2-core machine)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(raw), str(out), layout], env=env,
                            stdout=subprocess.PIPE, text=True)
    peak_pss = peak_worker_rss = 0
    while sample and proc.poll() is None:
        memory = tree_memory_kib(proc.pid)
        peak_pss = max(peak_pss, sum(pss for _rss, pss in memory.values()))
        peak_worker_rss = max([peak_worker_rss, *(rss for pid, (rss, _) in memory.items() if pid != proc.pid)])
        time.sleep(0.1)
    stdout, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"preprocess child failed ({proc.returncode})")
    shutil.rmtree(out)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["tree_peak_pss_kib"] = peak_pss
    result["worker_peak_rss_kib"] = peak_worker_rss
    return result


# --- dvc -----------------------------------------------------------------------------------------


def dvc_status_time(repo: Path, raw_builder, repeats: int = 3) -> dict:
    """Build a git+dvc repo with the preprocess stage over a 60k-image raw dir; repro once,
    then time ``dvc status`` (a no-op: nothing changed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "DVC_NO_ANALYTICS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True, env=env)
    raw_builder(repo / "data" / "raw")
    (repo / "run_preprocess.py").write_text(STAGE_SCRIPT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    t0 = time.perf_counter()
    subprocess.run([*dvc, "repro", "-q"], cwd=repo, check=True, env=env)
    repro_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([*dvc, "status"], cwd=repo, check=True, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
    assert "up to date" in proc.stdout.lower() or not proc.stdout.strip(), proc.stdout
    return {"repro_s": repro_s, "status_s": times, "status_median_s": statistics.median(times),
            "status_output": proc.stdout.strip()}


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-dvc", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-pre-", dir=args.workdir))
    results: dict = {"cpus": os.cpu_count()}
    try:
        dev = work / "dev"
        results["data"] = make_dev_set(dev)
        paths = jpeg_paths(dev)
        results["images"] = len(paths)
        raw10k, raw60k, cifar60k = work / "raw10k", work / "raw60k", work / "cifar60k"
        make_files_raw(raw10k, dev, 1)
        make_files_raw(raw60k, dev, 6)
        make_cifar_raw(cifar60k, dev)
        for path in paths:  # warm the page cache: every contender reads from memory
            path.read_bytes()
        import torchvision.transforms  # noqa: F401  (import time is not the naive loop's cost)

        bare, naive, ours = [], [], []
        for _ in range(args.repeats):
            bare.append(bare_loop(paths))
            naive.append(naive_loop(paths))
            ours.append(run_ours(raw10k, work / "out", "files"))
        best = min(ours, key=lambda r: r["wall_s"])
        n = len(paths)
        rate = {
            "bare_pil": n / min(bare),
            "naive_totensor": n / min(naive),
            "ours": n / best["wall_s"],
            "ours_without_listing": n / (best["wall_s"] - best["listing_s"]),
        }
        results["throughput_img_s"] = rate
        results["ratios"] = {
            "ours/naive": rate["ours"] / rate["naive_totensor"],
            "ours/bare": rate["ours"] / rate["bare_pil"],
            "ours_without_listing/bare": rate["ours_without_listing"] / rate["bare_pil"],
        }
        results["listing_s_10k"] = best["listing_s"]

        # Memory: separate runs, sampled (the throughput runs above are not).
        scale = {
            "files_10k": run_ours(raw10k, work / "out", "files", sample=True),
            "files_60k": run_ours(raw60k, work / "out", "files", sample=True),
            "cifar_60k": run_ours(cifar60k, work / "out", "cifar10", sample=True),
        }
        results["scale"] = {
            name: {
                "images": r["summary"]["images"],
                "wall_s": round(r["wall_s"], 3),
                "img_s": round(r["summary"]["images"] / r["wall_s"]),
                "listing_s": round(r["listing_s"], 3),
                "main_peak_rss_mib": round(r["main_peak_rss_kib"] / 1024, 1),
                "main_rss_after_imports_mib": round(r["base_rss_kib"] / 1024, 1),
                "worker_peak_rss_mib": round(r["worker_peak_rss_kib"] / 1024, 1),
                "all_processes_peak_pss_mib": round(r["tree_peak_pss_kib"] / 1024, 1),
            }
            for name, r in scale.items()
        }

        if not args.skip_dvc:
            def files_builder(raw: Path) -> None:
                make_files_raw(raw, dev, 6)

            def cifar_builder(raw: Path) -> None:
                shutil.copytree(cifar60k, raw)

            results["dvc_files_60k"] = dvc_status_time(work / "dvc-files", files_builder)
            results["dvc_cifar_60k"] = dvc_status_time(work / "dvc-cifar", cifar_builder)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(json.dumps(results, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
