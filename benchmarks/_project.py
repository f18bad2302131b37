"""What the benchmarks share: the project copied as a fresh clone holds it, params edits, and the
environment their dvc/git/stage subprocesses run in."""

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
