"""`imgpipe review --label-studio` against a REAL Label Studio server (1.23.2, its own venv).

The review file (validate and evaluate findings, the current labels as annotations, suggestions
as predictions) is imported whole; every task's image, written out with ``--images`` and served
through a local-files storage, downloads as the very file; and the JSON export of the project
comes back through the labels stage's reader to the same items and labels.

Label Studio is not installed into the project's venv (its pins would break the project's
deps): set ``IMGPIPE_LABEL_STUDIO`` to the ``label-studio`` executable of a separate venv
(``python -m venv /work/lsvenv && /work/lsvenv/bin/pip install label-studio==1.23.2``). Without
it the test is skipped, saying so. Starting a fresh server (database migrations) takes 1-2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgpipe import review as export
from imgpipe.contracts import REVIEW_COLUMNS
from imgpipe.io import write_json, write_parquet
from imgpipe.labels.match import ItemMatcher
from imgpipe.labelstudio.read import read_label_studio_json
from imgpipe.labelstudio.write import label_config
from imgpipe.rawdata import SourceInfo, list_items, pack_images, read_item_bytes

from factories import write_labels

pytestmark = pytest.mark.e2e

BINARY = os.environ.get("IMGPIPE_LABEL_STUDIO", "")
TOKEN = "imgpipe-e2e-token-0123456789"
CLASSES = ["cat", "dog", "frog"]
IDS = [f"images/{c}/{i}.png" for c in CLASSES for i in range(5)]
PREFIX = "/data/local-files/?d=review-images/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path, docroot: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (root / "label-studio.log").open("w")
        env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=str(root / "ls-data"), LOCAL_FILES_SERVING_ENABLED="true",
                   LOCAL_FILES_DOCUMENT_ROOT=str(docroot), SENTRY_DSN="", FRONTEND_SENTRY_DSN="",
                   COLLECT_ANALYTICS="false")
        self.proc = subprocess.Popen(
            [BINARY, "start", "--no-browser", "--port", str(self.port), "--host", "127.0.0.1",
             "--enable-legacy-api-token", "--username", "e2e@example.invalid", "--password", "e2e-password-1",
             "--user-token", TOKEN], cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)

    def wait(self, timeout: float = 300) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"label-studio exited ({self.proc.returncode}); see {self.log.name}")
            try:
                self.call("GET", "/api/version")
                return
            except (OSError, AssertionError):
                time.sleep(2)
        raise AssertionError(f"label-studio did not answer within {timeout} s; see {self.log.name}")

    def call(self, method: str, path: str, body=None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:2000]!r}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _project(root: Path) -> None:
    """A project after `dvc repro`, as far as `imgpipe review` reads it (tiny and generated)."""
    files = root / "data" / "raw" / "files"
    rng = np.random.default_rng(0)
    for item in IDS:
        (files / item).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(files / item)
    write_json(root / "data/raw/source.json", SourceInfo(source="t", kind="path", layout="files").to_json())
    pack_images(root / "data" / "raw")
    write_parquet(pd.DataFrame({"item_id": IDS}), root / "data/preprocessed/manifest.parquet")
    write_labels(root / "data" / "labels", IDS, [i // 5 for i in range(len(IDS))], CLASSES)
    found = [{"item_id": IDS[1], "source_path": IDS[1], "check": "label_issue", "score": 0.01, "decision": "flagged",
              "group_id": "", "suggested_label": "dog", "suggested_score": 0.9, "detail": "given cat"},
             {"item_id": IDS[7], "source_path": IDS[7], "check": "near_duplicate", "score": 0.99,
              "decision": "flagged", "group_id": "g1", "suggested_label": "", "suggested_score": 0.0, "detail": "copy"}]
    write_parquet(pd.DataFrame(found, columns=list(REVIEW_COLUMNS)), root / "data/validated/review.parquet")
    (root / "metrics" / "eval").mkdir(parents=True)
    pd.DataFrame([{"rank": 1, "item_id": IDS[12], "source_path": IDS[12], "label": "frog", "suggested_label": "cat",
                   "label_score": 0.02, "suggested_score": 0.95}]).to_csv(root / "metrics/eval/label_errors.csv",
                                                                          index=False)
    (root / "params.yaml").write_text("paths: {}\n")


@pytest.mark.skipif(not BINARY, reason="IMGPIPE_LABEL_STUDIO is unset: point it at a label-studio executable "
                    "(a separate venv with label-studio==1.23.2; see docs/labels.md)")
def test_review_file_imports_into_a_real_label_studio_and_comes_back(tmp_path, monkeypatch):
    root = tmp_path / "project"
    _project(root)
    monkeypatch.chdir(root)
    docroot = root / "annotations"
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    args = parser.parse_args(["--label-studio", "annotations/review.json", "--images", "annotations/review-images",
                              "--image-prefix", PREFIX, "--label-config", "annotations/review.xml"])
    assert export.run(args) == 0
    tasks = json.loads((root / "annotations/review.json").read_text())
    assert [t["data"].get("source") for t in tasks[:3]] == ["evaluate", "validate", "validate"]

    server = Server(tmp_path, docroot)
    try:
        server.wait()
        project = json.loads(server.call("POST", "/api/projects", {
            "title": "imgpipe review", "label_config": (root / "annotations/review.xml").read_text()}))
        assert (root / "annotations/review.xml").read_text() == label_config(CLASSES)
        server.call("POST", "/api/storages/localfiles", {
            "project": project["id"], "title": "review images", "path": str(docroot / "review-images"),
            "use_blob_urls": True})
        imported = json.loads(server.call("POST", f"/api/projects/{project['id']}/import", tasks))
        assert imported["task_count"] == len(tasks) == len(IDS)
        assert imported["annotation_count"] == len(tasks)  # every current label, none refused
        assert imported["prediction_count"] == sum(1 for t in tasks if t.get("predictions"))
        raw = root / "data" / "raw"
        original = {it.item_id: read_item_bytes(raw, it) for it in list_items(raw)}  # out of the pack
        for task in tasks:  # every task's image downloads from the server as the very file
            body = server.call("GET", task["data"]["image"])
            assert body == original[task["data"]["item_id"]], task["data"]["image"]
        exported = server.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    finally:
        server.stop()
    path = root / "annotations" / "export.json"
    path.write_bytes(exported)
    votes = read_label_studio_json(path)
    matcher = ItemMatcher(IDS)
    back = {matcher.match(ref).item_id: label for ref, label, kind in
            votes[["reference", "label", "kind"]].itertuples(index=False) if kind == "label"}
    assert back == {item: CLASSES[i // 5] for i, item in enumerate(IDS)}
