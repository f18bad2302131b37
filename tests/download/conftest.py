"""Fixtures for the acquisition tests: a loopback HTTP server, a moto S3 server, fast params."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The servers/archives helpers live here; the repo root makes `imgpipe` importable under a bare
# `pytest` too (the package is not installed into the venv).
for path in (str(HERE), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

from servers import LoopbackHTTPServer, MotoS3Server  # noqa: E402

from imgpipe.params.download import DownloadParams  # noqa: E402


@pytest.fixture
def http_server():
    with LoopbackHTTPServer() as server:
        yield server


@pytest.fixture
def make_cfg(tmp_path):
    """DownloadParams with a private cache, few retries and a short timeout."""

    def make(**overrides) -> DownloadParams:
        values = {"cache_dir": tmp_path / "cache", "retries": 3, "timeout_s": 2.0}
        values.update(overrides)
        return DownloadParams(**values)

    return make


@pytest.fixture(scope="session")
def moto_server():
    with MotoS3Server() as server:
        yield server


@pytest.fixture
def s3(moto_server, monkeypatch):
    """Credentials and endpoint in the environment the way a user sets them; a fresh bucket."""
    import uuid

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never look beyond 127.0.0.1
    client = moto_server.client()
    bucket = f"bucket-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return moto_server, client, bucket
