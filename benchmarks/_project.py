"""What the benchmarks share: the project copied as a fresh clone holds it, params edits, the
environment their dvc/git/stage subprocesses run in, and the label swaps the cleaning benchmarks
plant (bench_clean.py in the labels, bench_crossval.py in the image folder before download)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
# The pipeline's outputs: a fresh clone has none of them until `dvc repro` or `dvc pull`.
OUTPUTS = ("data/", "models/", "metrics/", "dvc.lock")


def copy_project(dest: Path) -> Path:
    """Tracked plus untracked-but-not-ignored files of the working tree, without the outputs."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=PROJECT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in files:
        if rel and not rel.startswith(OUTPUTS) and (PROJECT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / rel, dest / rel)
    return dest


def set_params(root: Path, updates: dict) -> None:
    """``{"section.key": value}`` into ``root/params.yaml`` (keys below the section may hold dots)."""
    path = root / "params.yaml"
    data = yaml.safe_load(path.read_text())
    for dotted, value in updates.items():
        section, key = dotted.split(".", 1)
        data[section][key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def bench_env(**extra: str) -> dict:
    """os.environ with telemetry and progress bars off, a git identity, and this interpreter's
    scripts (dvc, gto) first on PATH."""
    e = dict(os.environ, DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="false", TQDM_DISABLE="1",
             GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
             GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid", **extra)
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return e


def shared_data(name: str) -> Path:
    """``shared/data/<name>`` of the checkout that holds this project (the real data of the benchmarks)."""
    shared = next((p / "shared" for p in PROJECT.parents if (p / "shared" / "data").is_dir()), PROJECT.parent / "shared")
    return shared / "data" / name


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Run a dvc/stage command in the project copy ``cwd`` (its code first on PYTHONPATH); exit with
    its output's tail if it fails. Returns ``(wall seconds, stderr)``."""
    import time

    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=bench_env(PYTHONPATH=str(cwd)))
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stderr


def fresh_project(workdir: Path, source: str | None = None) -> Path:
    """An empty ``workdir`` holding a git-initialised copy of the project, reading ``source``
    (``download.source``; None keeps the project's default)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    copy_project(workdir)
    subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    if source is not None:
        set_params(workdir, {"download.source": source})
    return workdir


# -- planted label swaps -----------------------------------------------------------------------------
def swap_labels(labels, n_classes: int, count: int, rng):
    """``(rows, new labels)``: ``count`` seeded rows, each moved to another class drawn uniformly
    (the label noise the cleaning benchmarks plant)."""
    import numpy as np

    labels = np.asarray(labels)
    rows = np.sort(rng.choice(len(labels), count, replace=False))
    return rows, (labels[rows] + rng.integers(1, n_classes, len(rows))) % n_classes


def plant_swaps(archive: Path, dest: Path, fraction: float, seed: int) -> set[str]:
    """Unpack ``archive`` (ImageFolder) into ``dest`` and move ``fraction`` of the images into
    another class's folder (:func:`swap_labels`): a swap no stage can see. Returns the moved files'
    paths relative to the folder's root (``<new class>/<old class>-<name>``)."""
    import tarfile

    import numpy as np

    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    roots = [p for p in dest.iterdir() if p.is_dir()]
    root = roots[0] if len(roots) == 1 else dest
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*") if p.is_file())
    labels = np.array([classes.index(f.split("/", 1)[0]) for f in files])
    rows, new = swap_labels(labels, len(classes), int(round(fraction * len(files))),
                            np.random.default_rng(seed))
    moved = set()
    for i, to in zip(rows, new, strict=True):
        cls, name = files[i].split("/", 1)
        target = f"{classes[to]}/{cls}-{name}"
        (root / files[i]).rename(root / target)
        moved.add(target)
    return moved
