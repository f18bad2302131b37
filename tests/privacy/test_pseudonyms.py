"""Annotator pseudonyms: keyed, stable, unlinkable without the key, and in no output of the labels
stage is an input email left (Label Studio JSON, JSON-MIN and CSV exports)."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgpipe.io import write_json
from imgpipe.labels.importer import import_labels
from imgpipe.params.labels import LabelsParams
from imgpipe.params.privacy import PrivacyParams
from imgpipe.privacy import pseudonyms
from imgpipe.rawdata import SourceInfo

EMAILS = ["Ann.Smith@example.com", "bob@example.org", "carol@example.net"]


def _raw(root: Path, n: int) -> Path:
    for i in range(n):
        path = root / "files" / "images" / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((4, 4), i * 20, np.uint8), mode="L").save(path)
    write_json(root / "source.json", SourceInfo(source="test", kind="path", layout="files").to_json())
    return root


def _votes() -> list[tuple[int, str, str]]:
    """(image, annotator email, label): all three on images 0-3, where carol is wrong on 3."""
    rows = []
    for i in range(4):
        for who in EMAILS:
            rows.append((i, who, "dog" if (who == EMAILS[2] and i == 3) else ("cat" if i % 2 else "dog")))
    return rows


def _export(kind: str, path: Path) -> Path:
    rows = _votes()
    if kind == "json":
        tasks = {}
        for n, (i, who, label) in enumerate(rows):
            task = tasks.setdefault(i, {"id": i + 1, "data": {"image": f"/data/upload/1/img_{i}.png"},
                                        "annotations": [], "predictions": []})
            task["annotations"].append({
                "id": 100 + n, "completed_by": {"id": EMAILS.index(who) + 1, "email": who,
                                                "first_name": who.split("@")[0]},
                "result": [{"id": f"r{n}", "type": "choices", "from_name": "label", "to_name": "image",
                            "value": {"choices": [label]}}],
                "was_cancelled": False, "ground_truth": False,
            })
        path.write_text(json.dumps(list(tasks.values())))
        return path
    records = [{"id": i + 1, "image": f"/data/upload/1/img_{i}.png", "label": label, "annotator": who,
                "annotation_id": 100 + n, "created_at": "2026-11-20T10:00:00Z", "lead_time": 1.0}
               for n, (i, who, label) in enumerate(rows)]
    if kind == "json-min":
        path.write_text(json.dumps(records))
        return path
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sorted(records[0]), quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    writer.writerows(records)
    path.write_text(out.getvalue())
    return path


def _output_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())


def test_pseudonyms_are_keyed_stable_and_case_insensitive():
    key, other = b"k" * 32, b"o" * 32
    p = pseudonyms.pseudonym("ann@example.com", key)
    assert p.startswith("annotator-") and len(p) == len("annotator-") + 12
    assert p == pseudonyms.pseudonym(" ANN@example.com ", key)  # the same person
    assert p != pseudonyms.pseudonym("ann@example.com", other)  # another key: unlinkable
    assert p != pseudonyms.pseudonym("bob@example.com", key)
    assert "example" not in p and pseudonyms.pseudonym("", key) == ""


def test_key_from_environment_else_a_private_file_made_once(tmp_path, monkeypatch):
    monkeypatch.delenv(pseudonyms.KEY_ENV, raising=False)
    key_file = tmp_path / ".imgpipe" / "pseudonym.key"
    first = pseudonyms.load_key(key_file)
    assert len(first) == 32 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert pseudonyms.load_key(key_file) == first
    monkeypatch.setenv(pseudonyms.KEY_ENV, "team secret")
    assert pseudonyms.load_key(key_file) == b"team secret"


@pytest.mark.parametrize("kind,fmt", [("json", "label-studio-json"), ("json-min", "label-studio-json-min"),
                                      ("csv", "label-studio-csv")])
def test_no_email_reaches_any_output_and_agreement_still_works(kind, fmt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the key file, if any, lands here
    monkeypatch.setenv(pseudonyms.KEY_ENV, "shared team key")
    raw = _raw(tmp_path / "raw", 4)
    export = _export(kind, tmp_path / f"export.{'csv' if kind == 'csv' else 'json'}")
    cfg = LabelsParams(path=str(export), format=fmt)
    privacy = PrivacyParams()

    summary = import_labels(raw, tmp_path / "a", cfg, privacy_cfg=privacy)
    import_labels(raw, tmp_path / "b", cfg, privacy_cfg=privacy)
    blob = _output_bytes(tmp_path / "a") + json.dumps(summary, default=str).encode()
    for email in EMAILS:
        for form in (email, email.lower(), email.split("@")[0]):
            assert form.encode() not in blob, f"{form} leaked"
    # Stable across runs: the same bytes.
    assert _output_bytes(tmp_path / "a") == _output_bytes(tmp_path / "b")

    report = json.loads((tmp_path / "a" / "annotators.json").read_text())
    assert report["pseudonymised"] == 3
    by_name = {a["annotator"]: a for a in report["annotators"]}
    key = b"shared team key"
    carol = by_name[pseudonyms.pseudonym(EMAILS[2], key)]
    assert carol["agreement"] == pytest.approx(0.75)  # wrong on 1 of 4 shared images
    assert by_name[pseudonyms.pseudonym(EMAILS[0], key)]["agreement"] == 1.0
    labels = pd.read_parquet(tmp_path / "a" / "labels.parquet")
    assert labels["label"].tolist() == ["dog", "cat", "dog", "cat"]


def test_switched_off_keeps_the_emails(tmp_path, monkeypatch):
    """The check above would notice: with pseudonyms off, emails are in the output."""
    monkeypatch.chdir(tmp_path)
    raw = _raw(tmp_path / "raw", 4)
    export = _export("json-min", tmp_path / "export.json")
    cfg = LabelsParams(path=str(export), format="label-studio-json-min")
    import_labels(raw, tmp_path / "out", cfg, privacy_cfg=PrivacyParams(pseudonymise_annotators=False))
    assert EMAILS[1].encode() in _output_bytes(tmp_path / "out")
    assert not (tmp_path / ".imgpipe").exists()  # no key made when none is used
