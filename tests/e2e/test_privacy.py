"""Privacy end to end (real dvc, real S3 on moto): annotator emails in a Label Studio export reach
no output of any stage; take-downs delete an image's bytes from the workspace, the DVC cache and
the remote (with the exact `dvc gc` command docs/privacy.md gives); every pushed object is stored
with server-side encryption."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import pytest

from conftest import copy_clone

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "download"))  # servers.MotoS3Server

pytestmark = pytest.mark.e2e

EMAILS = ("alice.annotator@example.com", "bob.labeller@example.org")
BUCKET = "private-bucket"


def _export(truth: dict[str, str]) -> list[dict]:
    """Every image labelled by Alice; every third one by Bob too (who agrees), as Label Studio
    exports a Choices project whose users are named by email."""
    tasks = []
    for n, (item_id, label) in enumerate(sorted(truth.items()), 1):
        annotations = []
        for k, who in enumerate(EMAILS if n % 3 == 0 else EMAILS[:1]):
            annotations.append({
                "id": 10 * n + k, "completed_by": {"id": k + 1, "email": who, "first_name": who.split(".")[0]},
                "result": [{"id": f"r{n}{k}", "type": "choices", "from_name": "label", "to_name": "image",
                            "value": {"choices": [label]}}],
                "was_cancelled": False, "ground_truth": False,
            })
        tasks.append({"id": n, "data": {"image": f"/data/local-files/?d={item_id}"}, "annotations": annotations,
                      "predictions": []})
    return tasks


def _files(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in sorted(root.rglob("*")) if p.is_file()]


def _holding(paths: list[Path], needles: dict[str, bytes]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        blob = path.read_bytes()
        for name, needle in needles.items():
            if needle in blob:
                found.setdefault(name, []).append(str(path))
    return found


def _remote_holding(client, needles: dict[str, bytes]) -> tuple[int, dict[str, list[str]], set]:
    found: dict[str, list[str]] = {}
    encryption = set()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    for key in keys:
        encryption.add(client.head_object(Bucket=BUCKET, Key=key).get("ServerSideEncryption"))
        blob = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        for name, needle in needles.items():
            if needle in blob:
                found.setdefault(name, []).append(key)
    return len(keys), found, encryption


def test_pseudonyms_take_downs_and_encrypted_remote(reproduced_once, tmp_path, monkeypatch):
    from servers import MotoS3Server

    from imgpipe.rawdata import list_items, read_item_bytes

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # credentials from the environment only
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    clone = copy_clone(reproduced_once, tmp_path / "project")
    raw = clone.root / "data" / "raw"
    items = list_items(raw)
    data = {item.item_id: read_item_bytes(raw, item) for item in items}
    digests = {k: hashlib.sha256(v).hexdigest() for k, v in data.items()}
    unique = [k for k in sorted(data) if list(digests.values()).count(digests[k]) == 1]
    gone = {"by_item_id": unique[5], "by_sha256": unique[50], "by_path": unique[500]}
    needles = {how: data[item_id] for how, item_id in gone.items()}

    with MotoS3Server() as moto:
        client = moto.client()
        client.create_bucket(Bucket=BUCKET)
        clone.dvc("remote", "add", "-d", "s3", f"s3://{BUCKET}/imgpipe")
        clone.dvc("remote", "modify", "s3", "endpointurl", moto.endpoint_url)
        clone.dvc("remote", "modify", "s3", "sse", "AES256")
        clone.commit("share through S3, encrypted at rest")
        clone.dvc("push")  # the old version, excluded images and all, reaches the remote
        count, found, _ = _remote_holding(client, needles)
        assert set(found) == set(needles), "the search would see the images if they were there"

        # Labels from a Label Studio export that names annotators by email; three take-downs.
        with open(raw / "files" / "labels.csv", newline="") as fh:
            truth = {row["file"]: row["label"] for row in csv.DictReader(fh)}
        (clone.root / "annotations" / "export.json").write_text(json.dumps(_export(truth)))
        (clone.root / "annotations" / "exclude.csv").write_text(
            "item_id,path,sha256,reason\n"
            f"{gone['by_item_id']},,,subject asked for removal\n"
            f",,{digests[gone['by_sha256']]},subject asked for removal\n"
            f",incoming/batch-1/{gone['by_path']},,licence withdrawn\n")
        clone.set_params({"labels.path": "annotations/export.json", "labels.format": "label-studio-json"})
        proc = clone.dvc("repro")
        clone.commit("labels from Label Studio; take-downs")

        outputs = _files(*(clone.root / top for top in ("data", "metrics", "models", "reports")))
        outputs.append(clone.root / "dvc.lock")
        leaks = _holding(outputs, {e: e.encode() for e in EMAILS} | {e.split("@")[0]: e.split("@")[0].encode()
                                                                     for e in EMAILS})
        assert leaks == {}, f"emails in outputs: {leaks}"
        assert not any(e in proc.stdout + proc.stderr for e in EMAILS)
        report = json.loads((clone.root / "data" / "labels" / "annotators.json").read_text())
        assert report["pseudonymised"] == 2 and report["images_with_several_votes"] > 500
        assert all(a["annotator"].startswith("annotator-") and a["agreement"] == 1.0 for a in report["annotators"])
        assert sorted(set(data) - {i.item_id for i in list_items(raw)}) == sorted(gone.values())
        assert _holding(outputs, needles) == {}
        source = json.loads((raw / "source.json").read_text())
        assert source["extra"]["privacy"]["excluded"] == 3
        card = json.loads((clone.root / "data" / "card" / "card.json").read_text())["privacy"]
        assert card["excluded"] == 3 and card["annotators_pseudonymised"] == 2
        assert card["gps_images"] == 0 and card["faces_found"] == 0  # 8x8 digits: never searched
        assert "3 images excluded" in (clone.root / "data" / "card" / "card.md").read_text()

        # The take-down: push the new version, then delete everything the workspace no longer
        # uses from the cache and the remote (docs/privacy.md, "Take-downs").
        clone.dvc("push")
        clone.dvc("gc", "--workspace", "--cloud", "--remote", "s3", "--force")
        cache = _files(clone.root / ".dvc" / "cache")
        assert _holding(cache, needles) == {}
        count, found, encryption = _remote_holding(client, needles)
        assert found == {}
        assert count > 0 and encryption == {"AES256"}  # every stored object reports its encryption
        # What is left is enough: a fresh pull of the workspace version succeeds.
        assert json.loads(clone.dvc("status", "--cloud", "--json").stdout) == {}
