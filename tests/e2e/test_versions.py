"""Versions across machines, end to end: real dvc, real git remotes, real S3 (moto) on 127.0.0.1.

One project, a copy of the session's reproduced one (SHRINK'ed params), is pushed to a bare git
repository; every other folder (a teammate's clone, a fresh clone, a consumer project) is
derived from it. HOME points into the test's temporary folder, so the default remote
(``~/dvc-storage/imgpipe`` in ``.dvc/config``) lands there too. The tests run in file order and
build on each other, in the README's order: an experiment shared before anything was pushed,
the run cache, a plain round trip, pinned versions and rollback, then the switch to S3 with a
server that dies half-way through a push and a pull.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Clone, copy_clone, env, ran_stages

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sources"))  # servers.MotoS3Server

pytestmark = pytest.mark.e2e

OUTPUT_DIRS = ("data", "models", "metrics")
EXP = "other-split"
EXP_SET = ("-S", "train.lr=0.3")  # a new model and new metrics; the dataset stays
RESTORED = "is cached - skipping run"


def snapshot(root: Path, *tops: str) -> dict[str, str]:
    """sha256 of every file under the pipeline's output folders."""
    out = {}
    for top in tops or OUTPUT_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_clone(origin: Path, dest: Path) -> Clone:
    subprocess.run(["git", "clone", "-q", str(origin), str(dest)], check=True, env=env(), capture_output=True)
    return Clone(dest)


def register(clone: Clone, *tags: str) -> None:
    # Annotated tags, as `gto register` makes: DVC and GTO skip lightweight ones.
    for name in tags:
        clone.git("tag", "-a", name, "-m", f"Register {name}")


def assert_clean(clone: Clone) -> None:
    assert json.loads(clone.dvc("status", "--json").stdout) == {}
    proc = clone.dvc("repro")
    assert ran_stages(proc.stdout + proc.stderr) == []


def objects(moto) -> int:
    return moto.client().list_objects_v2(Bucket="team-bucket").get("KeyCount", 0)


@dataclass
class Team:
    base: Path
    origin: Path
    project: Clone
    v1: dict[str, str]
    exp: dict[str, str] = field(default_factory=dict)
    v2: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def team(reproduced_once, tmp_path_factory):
    base = tmp_path_factory.mktemp("versions")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(base / "home"))  # the default remote ~/dvc-storage/imgpipe lands here
        (base / "home").mkdir()
        origin = base / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
        project = copy_clone(reproduced_once, base / "project")
        project.git("remote", "add", "origin", str(origin))
        project.commit("v1")
        register(project, "model@v1.0.0", "dataset@v1.0.0")
        project.git("push", "-q", "origin", "main", "--tags")
        yield Team(base, origin, project, snapshot(project.root))


def test_an_experiment_shared_before_anything_was_pushed_applies_on_a_teammates_clone(team):
    """README order: run an experiment, `dvc exp push`; the teammate pulls and applies it, no training."""
    project = team.project
    project.dvc("exp", "run", "-n", EXP, *EXP_SET)
    team.exp = snapshot(project.root)
    assert team.exp["models/model.pt"] != team.v1["models/model.pt"]
    assert team.exp["metrics/eval.json"] != team.v1["metrics/eval.json"]
    assert team.exp["data/validated/dataset.parquet"] == team.v1["data/validated/dataset.parquet"]
    project.git("checkout", "--", ".")  # back to v1 in the workspace; the experiment stays a ref
    project.dvc("checkout", "--force")
    assert snapshot(project.root) == team.v1

    project.dvc("exp", "push", "origin", EXP)  # the git refs AND the data, to the default remote

    mate = git_clone(team.origin, team.base / "teammate")
    mate.dvc("exp", "pull", "origin", EXP)
    mate.dvc("exp", "apply", EXP)
    assert snapshot(mate.root) == team.exp  # model, dataset card, metrics: byte for byte
    assert_clean(mate)  # and nothing needs to run


def test_the_run_cache_restores_stages_instead_of_running_them(team):
    """Another clone switches params to the experiment's and back: every stage comes from the run cache."""
    team.project.run(sys.executable, "-m", "imgpipe.runcache", "push")  # records + the outputs they name
    other = git_clone(team.origin, team.base / "runner")
    other.dvc("pull")
    other.run(sys.executable, "-m", "imgpipe.runcache", "pull")
    other.set_params({"train.lr": 0.3})
    proc = other.dvc("repro")
    out = proc.stdout + proc.stderr
    assert ran_stages(out) == []
    assert out.count(RESTORED) == 3  # train, crossval (it reads train's params) and evaluate
    assert snapshot(other.root) == team.exp
    other.git("checkout", "--", "params.yaml")  # the change reverted
    proc = other.dvc("repro")
    out = proc.stdout + proc.stderr
    assert ran_stages(out) == [] and out.count(RESTORED) == 3
    assert snapshot(other.root) == team.v1


def test_round_trip_through_the_default_remote_is_byte_identical(team):
    team.project.dvc("push")
    fresh = git_clone(team.origin, team.base / "fresh")
    fresh.dvc("pull")
    assert snapshot(fresh.root) == team.v1
    assert_clean(fresh)


def test_pinned_versions_come_back_from_another_folder(team):
    project = team.project
    project.dvc("exp", "apply", EXP)  # promote the experiment to v2
    project.commit("v2: another learning rate")
    # The README's two ways to register a version: GTO's command for the model, a git tag for the data.
    project.run("gto", "register", "model", "--version", "v2.0.0")
    register(project, "dataset@v2.0.0")
    assert re.search(r"model\s*│\s*v2\.0\.0", project.run("gto", "show").stdout)
    project.dvc("push")
    project.git("push", "-q", "origin", "main", "--tags")
    team.v2 = snapshot(project.root)
    assert team.v2 == team.exp

    consumer = Clone(team.base / "consumer")
    consumer.root.mkdir()
    repo = str(team.origin)
    consumer.dvc("artifacts", "get", repo, "model", "--rev", "v1.0.0", "-o", "model-v1.pt")
    assert sha(consumer.root / "model-v1.pt") == team.v1["models/model.pt"]
    consumer.dvc("artifacts", "get", repo, "dataset", "--rev", "v1.0.0", "-o", "dataset-v1")
    got = {p.name: sha(p) for p in (consumer.root / "dataset-v1").iterdir()}
    assert got == {Path(k).name: v for k, v in team.v1.items() if k.startswith("data/validated/")}
    consumer.dvc("get", repo, "models/model.pt", "--rev", "model@v2.0.0", "-o", "model-v2.pt")
    assert sha(consumer.root / "model-v2.pt") == team.v2["models/model.pt"] != team.v1["models/model.pt"]
    consumer.dvc("get", repo, "data/card/card.json", "--rev", "dataset@v2.0.0", "-o", "card-v2.json")
    assert sha(consumer.root / "card-v2.json") == team.v2["data/card/card.json"]

    consumer.git("init", "-q", "-b", "main")
    consumer.dvc("init", "-q")
    consumer.dvc("import", repo, "models/model.pt", "--rev", "model@v1.0.0", "-o", "imported.pt")
    assert sha(consumer.root / "imported.pt") == team.v1["models/model.pt"]


def test_rollback_restores_a_tagged_version_byte_for_byte(team):
    project = team.project
    project.git("checkout", "-q", "model@v1.0.0")
    project.dvc("checkout")
    assert snapshot(project.root) == team.v1
    assert json.loads(project.dvc("status", "--json").stdout) == {}
    project.git("checkout", "-q", "main")
    project.dvc("checkout")
    assert snapshot(project.root) == team.v2


def test_switch_to_s3_survives_a_server_that_dies_mid_push_and_mid_pull(team, monkeypatch):
    """The README's one-command switch to S3, then the connection dies half-way, twice."""
    from cutproxy import CutProxy
    from servers import MotoS3Server

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # credentials from the environment only
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # fail in seconds, not after minutes of retries
    project = team.project
    sizes = [p.stat().st_size for top in ("data", "models") for p in (project.root / top).rglob("*") if p.is_file()]
    payload = sum(sizes)
    # The first push sends one file at a time (-j 1), and dies half-way between its largest file
    # and the whole payload: whatever the order, at least one file is stored and at least one is
    # not. With parallel uploads on a loaded machine, every file could still be in flight when the
    # connection died (seen in CI: none stored).
    cut = max(sizes) + (payload - max(sizes)) // 2
    assert payload - cut > 4096, "the test needs a few files besides the largest"
    with MotoS3Server() as moto, CutProxy(moto.port) as server:
        moto.client().create_bucket(Bucket="team-bucket")
        project.dvc("remote", "add", "-d", "s3", "s3://team-bucket/imgpipe")
        project.dvc("remote", "modify", "s3", "endpointurl", server.url)
        config = (project.root / ".dvc" / "config").read_text()
        assert "secret" not in config and "access_key" not in config
        project.commit("share through S3")
        project.git("push", "-q", "origin", "main")

        server.cut_after(cut, "up")  # the server dies part of the way into the push
        failed = project.dvc("push", "-j", "1", check=False)
        assert failed.returncode != 0 and server.cuts == 1
        assert "Could not connect to the endpoint URL" in failed.stderr
        stored = objects(moto)
        server.start()  # back up, data intact
        done = project.dvc("push")
        pushed = int(re.search(r"(\d+) files? pushed", done.stdout).group(1))
        assert 0 < stored < objects(moto) == stored + pushed  # the second push sent only what was missing
        assert json.loads(project.dvc("status", "--cloud", "--json").stdout) == {}

        mate = git_clone(team.origin, team.base / "s3-teammate")
        server.cut_after(payload // 2, "down")  # and dies again half-way through a pull
        failed = mate.dvc("pull", check=False)
        assert failed.returncode != 0 and server.cuts == 2
        assert "Could not connect to the endpoint URL" in failed.stderr
        server.start()
        mate.dvc("pull")
        assert snapshot(mate.root) == team.v2
        assert_clean(mate)
