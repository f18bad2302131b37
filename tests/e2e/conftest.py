"""End-to-end fixtures: a temporary git clone of this project, driven with the real dvc CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
# The real config, shrunk: fewer epochs and copies so the e2e tier stays quick on 2 cores.
SHRINK = {"train.epochs": 3, "augment.copies": 1}
GIT_ID = {
    "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.invalid",
    "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.invalid",
}


def project_files() -> list[str]:
    """What a clone of the project holds: tracked plus untracked-but-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT, check=True, capture_output=True,
    ).stdout.decode()
    skip = ("data/", "models/", "metrics/", "dvc.lock")
    return sorted(f for f in out.split("\0") if f and not f.startswith(skip) and (PROJECT / f).is_file())


def env() -> dict:
    e = dict(os.environ, **GIT_ID, DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="false", TQDM_DISABLE="1")
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "")
    e.pop("DVC_ROOT", None)
    return e


class Clone:
    def __init__(self, root: Path):
        self.root = root

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(args, cwd=self.root, env=env(), capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout

    def set_params(self, updates: dict) -> None:
        path = self.root / "params.yaml"
        data = yaml.safe_load(path.read_text())
        for dotted, value in updates.items():
            *parents, key = dotted.split(".")
            node = data
            for part in parents:  # nested keys too: validate.near_duplicates.max_crop
                node = node[part]
            node[key] = value
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-qm", message)


def ran_stages(output: str) -> list[str]:
    """Stages dvc actually executed, from its 'Running stage' lines."""
    return re.findall(r"Running stage '([^']+)'", output)


def make_clone(root: Path, overrides: dict | None = None) -> Clone:
    root.mkdir(parents=True)
    for rel in project_files():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / rel, dest)
    clone = Clone(root)
    clone.git("init", "-q", "-b", "main")
    clone.set_params({**SHRINK, **(overrides or {})})
    clone.commit("clone")
    return clone


def copy_clone(src: Clone, root: Path) -> Clone:
    """A copy of a clone (git history, DVC cache, outputs and all), to change without touching ``src``."""
    shutil.copytree(src.root, root, symlinks=True)
    clone = Clone(root)
    for attr in ("first_output", "first_lock"):
        if hasattr(src, attr):
            setattr(clone, attr, getattr(src, attr))
    return clone


def _shared_dir(config) -> Path:
    """A folder shared by every pytest-xdist worker of this run, and by no other run: under xdist
    each worker's basetemp is <run>/popen-gwN; without xdist the session's own basetemp serves."""
    base = config._tmp_path_factory.getbasetemp()  # the tmp_path_factory fixture's own object
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _build_reproduced(shared: Path) -> None:
    """Reproduce the default pipeline once into ``shared`` (first caller builds, under a file lock;
    later callers, in this or another worker, find it built)."""
    from filelock import FileLock

    record = shared / "repro-once" / "first.json"
    with FileLock(str(shared / "repro-once.lock")):
        if not record.exists():
            clone = make_clone(shared / "repro-once" / "project")
            proc = clone.dvc("repro")
            first = {"output": proc.stdout + proc.stderr, "lock": (clone.root / "dvc.lock").read_text()}
            record.write_text(json.dumps(first))


class _Background:
    thread: threading.Thread | None = None
    error: BaseException | None = None


def pytest_collection_finish(session) -> None:
    """Start building the reproduced project as soon as the tests that need it are collected, in a
    background thread: the ~1 min `dvc repro` then overlaps the unit tests instead of stalling the
    first e2e test (and, under xdist, every worker that waits for it)."""
    if _Background.thread is not None or not any("reproduced_once" in getattr(item, "fixturenames", ())
                                                  for item in session.items):
        return
    shared = _shared_dir(session.config)

    def build() -> None:
        try:
            _build_reproduced(shared)
        except BaseException as exc:  # re-raised by the fixture, in the test that needs it
            _Background.error = exc

    _Background.thread = threading.Thread(target=build, name="reproduced-once", daemon=True)
    _Background.thread.start()


@pytest.fixture(scope="session")
def reproduced_once(pytestconfig) -> Clone:
    """The default pipeline reproduced once per test run, shared by every pytest-xdist worker;
    never change it: take a ``copy_clone``."""
    shared = _shared_dir(pytestconfig)
    if _Background.thread is not None:
        _Background.thread.join()
        if _Background.error is not None:
            raise _Background.error
    _build_reproduced(shared)  # a no-op when built; builds here if the background build never ran
    first = json.loads((shared / "repro-once" / "first.json").read_text())
    clone = Clone(shared / "repro-once" / "project")
    clone.first_output, clone.first_lock = first["output"], first["lock"]
    return clone


@pytest.fixture(scope="module")
def reproduced(reproduced_once, tmp_path_factory) -> Clone:
    """A clone on which `dvc repro` has run once, this module's own copy; tests that change it
    in ways other tests of the module would notice use their own clone."""
    return copy_clone(reproduced_once, tmp_path_factory.mktemp("repro") / "project")
