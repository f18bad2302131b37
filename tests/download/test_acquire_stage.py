"""``python -m stages.download`` as a subprocess, in a temporary project, against the loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import yaml
from archives import imagefolder, sha256, tar_bytes
from servers import REPO


def run_stage(tmp_path, download: dict) -> subprocess.CompletedProcess:
    params = {"download": {"retries": 2, "timeout_s": 2.0, "cache_dir": ".cache/downloads", **download}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "stages.download"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_stage_fetches_and_records_provenance(http_server, tmp_path):
    data = tar_bytes(sorted(imagefolder(top="pets").items()), "gz")
    url = http_server.add("/pets.tar.gz", data)
    proc = run_stage(tmp_path, {"source": url, "sha256": sha256(data)})
    assert proc.returncode == 0, proc.stderr
    assert "download: done" in proc.stderr and f"sha256: {sha256(data)}" in proc.stderr
    info = json.loads((tmp_path / "data/raw/source.json").read_text())
    assert (info["url"], info["final_url"], info["size_bytes"]) == (url, url, len(data))
    first = (tmp_path / "data/raw/source.json").read_bytes()
    assert run_stage(tmp_path, {"source": url, "sha256": sha256(data)}).returncode == 0
    assert (tmp_path / "data/raw/source.json").read_bytes() == first
    assert len(http_server.route("/pets.tar.gz").requests) == 1  # the rerun used the cache


def test_stage_failure_is_one_line_and_leaves_nothing(http_server, tmp_path):
    url = http_server.base_url + "/missing.tar.gz"
    proc = run_stage(tmp_path, {"source": url})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"download failed: {url}: HTTP 404 Not Found"]
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").rglob("*")) == []


def test_stage_refuses_tar_slip_and_keeps_previous_output(http_server, tmp_path):
    members = [*sorted(imagefolder(top="pets").items()), ("pets/../../../escape.png", b"x"),
               ("pets/link", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})]
    url = http_server.add("/evil.tgz", tar_bytes(members, "gz"))
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/source.json").write_text("{}\n")
    proc = run_stage(tmp_path, {"source": url})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"download failed: {url}: member 'pets/../../../escape.png' points outside the destination ('..')"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "data").rglob("*")) == [
        "data/raw", "data/raw/source.json"]
    assert not (tmp_path.parent / "escape.png").exists()
