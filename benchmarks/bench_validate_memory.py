"""Peak memory (max RSS) and wall time of the whole validate stage at 100k-1M images.

What it runs: ``python -m stages.validate`` in a copy of the project whose ``data/preprocessed``
and ``data/labels`` were generated directly, in the exact contract of ``docs/DATA_CONTRACTS.md``,
with the project's own writers (``ShardWriter`` / ``EncodedShardWriter``, ``ManifestBuilder``,
``features.compute``, ``encode_stored``, ``write_parquet``, ``write_json``), in a process of its
own. The stage is a child of a small process; its peak is ``ru_maxrss`` from ``os.wait4`` on that
child (see :func:`measure` for why not ``RUSAGE_CHILDREN`` of a process that generated the data),
with its CPU seconds, the load average it ran under, and ``/proc`` samples (the stage's own
``VmHWM``, its process tree, a timeline of its RSS) to check the figure and see the phases.

How the images are made (seeded, ``--seed``): the 50,000 real CIFAR-10 training photographs
(``../shared/data/cifar10-train.tar.gz``; seeded smooth random images when it is absent) are the
bases. Image ``i`` is ``alpha * A + (1 - alpha) * B`` of two seeded bases (alpha 0.5..0.75, ``A``
flipped and rolled by up to 4 pixels), a per-channel colour gain and seeded noise, labelled with
``A``'s class; 1% of the labels are then swapped, 0.3% of the images are exact copies and 0.3%
are copies shifted by one pixel, so the duplicate groups and the label-issue ranking behave as on
real data. At 224 pixels the composite is upscaled (bilinear) before the noise, and stored as
``preprocess.store: auto`` would store it (``jpeg``, quality 90).

Usage (nice it: the machine is shared)::

    nice python benchmarks/bench_validate_memory.py --cases 100000x32 300000x32 1000000x32 100000x224
    PYTHONPATH=../main-checkout nice python benchmarks/bench_validate_memory.py --code ../main-checkout --cases 100000x32

``--code`` is the project whose ``stages/`` and ``imgpipe/`` run the stage (the baseline: main's
code); the data are generated once per case under ``--workdir`` and reused (``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import PROJECT, bench_env, copy_project, set_params  # noqa: E402

CIFAR = PROJECT.parent.parent / "shared/data/cifar10-train.tar.gz"
BLOCK = 2048  # images generated per block


def load_bases(seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(N, 32, 32, 3)`` uint8 base photographs, their class indices and the class names."""
    from PIL import Image

    for candidate in (CIFAR, Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train.tar.gz"):
        if candidate.exists():
            images, labels, names = [], [], []
            with tarfile.open(candidate) as tar:
                members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                                 key=lambda m: m.name)
                for m in members:
                    cls = m.name.split("/")[-2]
                    if cls not in names:
                        names.append(cls)
                    with Image.open(tar.extractfile(m)) as im:
                        images.append(np.asarray(im.convert("RGB")))
                    labels.append(names.index(cls))
            order = sorted(range(len(names)), key=lambda k: names[k])
            remap = np.argsort(order)
            return np.stack(images), remap[np.asarray(labels)], sorted(names)
    rng = np.random.default_rng(seed)  # no shared data: smooth seeded images, 10 colour families
    small = rng.integers(0, 256, (5000, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 5000)
    small += (labels[:, None, None, None] * 25.0)
    big = np.clip(np.kron(small, np.ones((1, 8, 8, 1))), 0, 255).astype(np.uint8)
    return big, labels, [f"class{k}" for k in range(10)]


def make_block(bases, base_labels, start: int, count: int, size: int, seed: int):
    """Images ``start..start+count`` and their true labels (seeded per block: any block is
    reproducible alone)."""
    rng = np.random.default_rng([seed, start])
    a = rng.integers(0, len(bases), count)
    b = rng.integers(0, len(bases), count)
    alpha = rng.uniform(0.5, 0.75, count).astype(np.float32)[:, None, None, None]
    first = bases[a].astype(np.float32)
    flip = rng.random(count) < 0.5
    first[flip] = first[flip, :, ::-1]
    shifts = rng.integers(-4, 5, (count, 2))
    for k in range(count):
        first[k] = np.roll(first[k], tuple(shifts[k]), axis=(0, 1))
    mix = alpha * first + (1 - alpha) * bases[b].astype(np.float32)
    mix *= rng.uniform(0.85, 1.15, (count, 1, 1, 3)).astype(np.float32)
    if size != mix.shape[1]:
        import torch

        mix = torch.nn.functional.interpolate(torch.from_numpy(mix).permute(0, 3, 1, 2), size=(size, size),
                                              mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    mix += rng.normal(0, 3.0, mix.shape).astype(np.float32)
    pixels = np.clip(np.rint(mix), 0, 255).astype(np.uint8)
    # Planted duplicates: exact copies and one-pixel shifts of an earlier image of the block.
    kind = rng.random(count)
    for k in np.nonzero(kind < 0.006)[0]:
        if k == 0:
            continue
        src = int(rng.integers(0, k))
        pixels[k] = pixels[src] if kind[k] < 0.003 else np.roll(pixels[src], 1, axis=1)
        a[k] = a[src]
    return pixels, base_labels[a]


def generate(root: Path, n: int, size: int, seed: int) -> dict:
    """``data/preprocessed`` and ``data/labels`` of ``n`` images under ``root``."""
    import pandas as pd

    from imgpipe import contracts as c
    from imgpipe.io import write_json, write_parquet
    from imgpipe.params.preprocess import PreprocessParams
    from imgpipe.preprocess import features
    from imgpipe.preprocess.chunks import ChunkResult, encode_stored
    from imgpipe.preprocess.pipeline import ManifestBuilder
    from imgpipe.preprocess.shards import EncodedShardWriter, ShardWriter

    t0 = time.perf_counter()
    cfg = PreprocessParams(size=[size, size])
    store = cfg.resolved_store
    bases, base_labels, classes = load_bases(seed)
    pre, lab = root / "data/preprocessed", root / "data/labels"
    for d in (pre, lab, root / "data/raw"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    max_bytes = int(cfg.shard_max_mb * 2**20)
    writer = ShardWriter(pre, (size, size, 3), max_bytes) if store == "pixels" else EncodedShardWriter(pre, max_bytes)
    builder = ManifestBuilder(3)
    true_labels = np.empty(n, np.int64)
    with writer:
        for start in range(0, n, BLOCK):
            count = min(BLOCK, n - start)
            pixels, y = make_block(bases, base_labels, start, count, size, seed)
            true_labels[start:start + count] = y
            ids = [f"gen/{i:07d}.png" for i in range(start, start + count)]
            meta = {"item_id": ids, "source_path": ids, "source_index": [None] * count,
                    "source_split": ["test" if i % 10 == 0 else "train" for i in range(start, start + count)],
                    "orig_width": [size] * count, "orig_height": [size] * count, "orig_mode": ["RGB"] * count,
                    "orig_format": ["PNG"] * count, "orig_bytes": [size * size * 3] * count}
            encoded = encode_stored(pixels, cfg)  # jpeg: pixels become what a reader decodes
            columns = dict(meta)
            columns.update(features.compute(pixels))
            result = ChunkResult(count, pixels, columns, [], encoded)
            shard, offset = writer.add(pixels if store == "pixels" else encoded)
            builder.add(result, shard, offset)
        shards = writer.close()
    write_parquet(builder.manifest(), pre / c.MANIFEST_FILE)
    write_parquet(builder.rejects_frame(), pre / c.REJECTS_FILE)
    write_json(pre / c.PREPROCESS_INFO_FILE, {
        "mode": "RGB", "size": [size, size], "channels": 3, "resize": cfg.resize, "background": list(cfg.background),
        "store": store, "counts": {"items": n, "images": n, "rejects": 0}, "rejects_by_reason": {}, "shards": shards})
    rng = np.random.default_rng([seed, 1])
    given = true_labels.copy()
    swaps = np.sort(rng.choice(n, n // 100, replace=False))
    given[swaps] = (given[swaps] + rng.integers(1, len(classes), len(swaps))) % len(classes)
    ids = [f"gen/{i:07d}.png" for i in range(n)]
    labels = pd.DataFrame({"item_id": pd.array(ids, dtype="str"),
                           "label": pd.array([classes[k] for k in given], dtype="str"),
                           "label_index": given.astype(np.int64), "annotators": np.ones(n, np.int64),
                           "agreement": np.ones(n), "label_source": pd.array(["folder"] * n, dtype="str")})
    write_parquet(labels, lab / c.LABELS_FILE)
    write_json(lab / c.CLASSES_FILE, {"classes": classes})
    issues = pd.DataFrame({k: pd.array([], dtype="str") for k in ("item_id", "reference", "problem", "detail", "action")})
    write_parquet(issues, lab / c.LABEL_ISSUES_FILE)
    return {"generate_s": round(time.perf_counter() - t0, 1), "store": store,
            "data_mb": round(sum(f.stat().st_size for f in pre.rglob("*") if f.is_file()) / 2**20, 1)}


def generate_case(workdir: Path, n: int, size: int, seed: int) -> Path:
    """The case's project copy and data, generated once (``generated.json`` marks it done), in a
    child process: generating 224-pixel blocks peaks at several GB, and a process that has been
    that large must not be the one that starts the measured stage (see :func:`measure`)."""
    root = workdir / f"n{n}-px{size}"
    if not (root / "generated.json").exists():
        subprocess.run([sys.executable, __file__, "--generate", f"{n}x{size}", "--workdir", str(workdir),
                        "--seed", str(seed)], check=True)
    return root


def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile (kB) of a live process; {} once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    keys = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    return {k: int(line.split()[1]) for line in lines for k in keys if line.startswith(k + ":")}


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for t in os.listdir(f"/proc/{p}/task")
                    for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def measure(cmd: list[str], cwd: Path, env: dict, log: Path, every: float = 0.5) -> dict:
    """Run ``cmd`` and return its own peak RSS, CPU seconds, wall time and the load it ran under.

    The peak is ``ru_maxrss`` from ``os.wait4`` on that one child (its own high-water mark and that
    of any descendant it reaped), not ``getrusage(RUSAGE_CHILDREN)``, and the process calling this
    stays small. Both matter: Python starts children with ``vfork``, and Linux records the
    high-water RSS of the address space a process had before ``exec`` into the new program's
    ``ru_maxrss``; with ``vfork`` that address space is the parent's. A parent that had generated
    20,000 224-pixel images (5.9 GB of float blocks) so lent its own peak to the stage it started:
    the 5,870 MiB reading. A sampler thread also reads ``/proc`` every ``every`` seconds: the
    stage's own ``VmHWM`` (kernel high-water mark of its address space since ``exec``), the RSS of
    its process tree, and the anonymous vs file-backed split at the peak (a memory-mapped shard's
    pages read are file-backed: the kernel can drop them, unlike anonymous memory)."""
    import threading

    trace = log.with_suffix(".rss")  # seconds, RSS MiB, VmHWM MiB per sample
    trace.unlink(missing_ok=True)
    samples: dict = {"hwm": 0, "tree": 0, "anon": 0, "file": 0, "loads": [], "timeline": []}
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(every):
                st = _status(proc.pid)
                if not st:
                    continue
                tree = st.get("VmRSS", 0) + sum(_status(p).get("VmRSS", 0) for p in _descendants(proc.pid))
                samples["hwm"] = max(samples["hwm"], st.get("VmHWM", 0))
                if st.get("VmRSS", 0) > samples["anon"] + samples["file"]:
                    samples["anon"], samples["file"] = st.get("RssAnon", 0), st.get("RssFile", 0)
                samples["tree"] = max(samples["tree"], tree)
                samples["loads"].append(os.getloadavg()[0])
                samples["timeline"].append((round(time.perf_counter() - t0), round(st.get("VmRSS", 0) / 1024)))
                with trace.open("a") as out:  # as it goes: a run stopped early still shows its phases
                    out.write(f"{samples['timeline'][-1][0]} {samples['timeline'][-1][1]} {st.get('VmHWM', 0) // 1024}\n")

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
    timeline = samples["timeline"]
    stride = max(1, len(timeline) // 40)  # about 40 points of (seconds, MiB) to see the phases
    loads = samples["loads"] or [os.getloadavg()[0]]
    return {"rc": proc.returncode, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "sampled_vmhwm_mib": round(samples["hwm"] / 1024, 1), "sampled_tree_rss_mib": round(samples["tree"] / 1024, 1),
            "at_peak_anon_mib": round(samples["anon"] / 1024, 1), "at_peak_file_mib": round(samples["file"] / 1024, 1),
            "load_mean": round(sum(loads) / len(loads), 2), "load_max": round(max(loads), 2),
            "rss_timeline_s_mib": timeline[::stride]}


def set_nested(root: Path, updates: dict) -> None:
    """``{"validate.near_duplicates.max_crop": 0}`` into ``root/params.yaml``, one level per dot."""
    import yaml

    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for dotted, value in updates.items():
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def run_one(workdir: Path, code: Path, n: int, size: int, seed: int, extra: dict) -> dict:
    root = generate_case(workdir, n, size, seed)
    gen = json.loads((root / "generated.json").read_text())
    # The stage code under test: the given project's stages/ and imgpipe/; params.yaml is this
    # project's (a code with fewer keys reads only its own), with the case's size and ``--set``.
    for name in ("stages", "imgpipe", "expectations"):
        shutil.rmtree(root / name, ignore_errors=True)
        shutil.copytree(code / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(PROJECT / "params.yaml", root / "params.yaml")
    # The images are photographs (CIFAR-10 blends): ``download.source`` says so, so that
    # ``near_duplicates.max_crop: auto`` resolves as for photographs (the crop pass on).
    set_params(root, {"preprocess.size": [size, size], "download.source": "cifar10"})
    set_nested(root, extra)
    env = bench_env(PYTHONPATH=str(root))
    load_before = os.getloadavg()[0]
    m = measure([sys.executable, "-m", "stages.validate"], root, env, root / "validate.log")
    quality = json.loads((root / "metrics/data_quality.json").read_text()) if m["rc"] == 0 else {}
    return {"images": n, "px": size, "code": str(code), "set": extra, **m,
            "peak_rss_bytes_per_image": round(m["peak_rss_mib"] * 2**20 / n, 1),
            "load_before": round(load_before, 2), **gen,
            "near_duplicate_groups": quality.get("near_duplicate_groups"), "label_issues": quality.get("label_issues"),
            "exact_duplicate_groups": quality.get("exact_duplicate_groups"),
            "tail": (root / "validate.log").read_text()[-1500:] if m["rc"] else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="+", default=["100000x32", "300000x32", "1000000x32", "100000x224"],
                    help="IMAGESxPIXELS")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_validate_memory"))
    ap.add_argument("--code", type=Path, default=PROJECT, help="project whose stage code runs (baseline: main)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="extra params, section.key=yaml")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--generate", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help="append one JSON line per case here")
    args = ap.parse_args()
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.generate:  # a case's data, in a process of its own (it grows large at 224 px)
        n, size = (int(x) for x in args.generate.split("x"))
        root = args.workdir / f"n{n}-px{size}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        copy_project(root)
        set_params(root, {"preprocess.size": [size, size]})
        (root / "generated.json").write_text(json.dumps(generate(root, n, size, args.seed)))
        return
    if args.one:  # one case, in a small process of its own that starts the measured stage
        n, size = (int(x) for x in args.one.split("x"))
        print(json.dumps(run_one(args.workdir, args.code.resolve(), n, size, args.seed, extra)), flush=True)
        return
    for case in args.cases:
        cmd = [sys.executable, __file__, "--one", case, "--workdir", str(args.workdir), "--code", str(args.code),
               "--seed", str(args.seed), "--set", *args.set]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()
