"""Export speed per format, against the plain way to write the same data with the format's own
tools, on a reproduced project (by default the 50,000-image CIFAR-10 one bench_diff builds).

    nice python benchmarks/bench_export.py --project /tmp/bench-diff-project

For each format, in the same run: ``imgpipe export`` (the writer alone, in this process, and the
CLI end to end), then the baseline: ``imagefolder`` a plain loop reading each image's bytes and
writing one file per image into ``<split>/<class>/``; ``hf`` ``datasets.Dataset.from_dict(...)``
with the same columns and ``.to_parquet`` per split; ``webdataset`` ``webdataset.TarWriter``
with the same samples. Prints seconds, images per second, and the ratio export / baseline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _project import PROJECT, bench_env

sys.path.insert(0, str(PROJECT))


# this checkout's CLI, whatever the project's own copy of imgpipe is
CLI = f"import sys; sys.path.insert(0, {str(PROJECT)!r}); from imgpipe.cli import main; sys.exit(main())"


def baseline_imagefolder(project, out: Path) -> int:
    n = 0
    for image in project.images():
        folder = out / image.split / image.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (image.item_id.replace("/", "__") + ("" if image.item_id.endswith(image.ext) else image.ext))
         ).write_bytes(image.data)
        n += 1
    return n


def baseline_hf(project, out: Path) -> int:
    import datasets

    n = 0
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=project.classes),
                                  "item_id": datasets.Value("string"), "source_path": datasets.Value("string")})
    for split in project.splits():
        rows = list(project.images(split))
        ds = datasets.Dataset.from_dict({
            "image": [{"bytes": r.data, "path": r.item_id} for r in rows], "label": [r.label_index for r in rows],
            "item_id": [r.item_id for r in rows], "source_path": [r.source_path for r in rows]}, features=features)
        out.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(out / f"{split}.parquet"))
        n += len(rows)
    return n


def baseline_webdataset(project, out: Path, shard_size: int) -> int:
    import json

    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for split in project.splits():
        with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            for i, r in enumerate(project.images(split)):
                sink.write({"__key__": f"{split}-{i:08d}", r.ext[1:]: r.data, "cls": str(r.label_index),
                            "json": json.dumps({"item_id": r.item_id, "label": r.label})})
                n += 1
    return n


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("/tmp/bench-diff-project"),
                        help="a reproduced project (bench_diff.py --keep DIR builds the CIFAR-10 one)")
    parser.add_argument("--shard-size", type=int, default=10000)
    args = parser.parse_args()
    import logging

    logging.getLogger("datasets").setLevel(logging.ERROR)
    import datasets  # imported before timing: the baselines are timed writing, not importing
    import webdataset  # noqa: F401

    datasets.disable_progress_bars()
    from imgpipe.export import ExportOptions, ProjectOutputs, export_dataset

    base = Path(tempfile.mkdtemp(prefix="bench-export-"))
    project = ProjectOutputs(args.project.resolve())
    n = len(project.dataset)
    print(f"project: {args.project} ({n} images, source layout {project.source.layout})")
    baselines = {"imagefolder": lambda out: baseline_imagefolder(ProjectOutputs(project.root), out),
                 "hf": lambda out: baseline_hf(ProjectOutputs(project.root), out),
                 "webdataset": lambda out: baseline_webdataset(ProjectOutputs(project.root), out, args.shard_size)}
    for fmt, baseline in baselines.items():
        t_export, _ = timed(lambda fmt=fmt: export_dataset(ProjectOutputs(project.root), fmt, base / fmt,
                                                           ExportOptions(shard_size=args.shard_size)))
        t_cli, _ = timed(lambda fmt=fmt: subprocess.run(
            [sys.executable, "-c", CLI, "export", "--format", fmt, "--out", str(base / f"{fmt}-cli"),
             "--shard-size", str(args.shard_size)], cwd=project.root, env=bench_env(), check=True,
            capture_output=True))
        t_base, _ = timed(lambda fmt=fmt, baseline=baseline: baseline(base / f"{fmt}-baseline"))
        print(f"{fmt:12s} export {t_export:6.2f} s ({n / t_export:7.0f} img/s), CLI end to end {t_cli:6.2f} s; "
              f"baseline {t_base:6.2f} s ({n / t_base:7.0f} img/s); export/baseline {t_export / t_base:.2f}x")
        for path in (base / fmt, base / f"{fmt}-cli", base / f"{fmt}-baseline"):
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
