"""s3:// sources against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
from archives import imagefolder, sha256, tar_bytes
from servers import FAST_BACKOFF, free_port

from imgpipe.download.acquire import acquire, fetch_to_file
from imgpipe.errors import SourceError
from imgpipe.rawdata import list_items


def test_s3_archive_source_end_to_end(s3, make_cfg, tmp_path):
    server, client, bucket = s3
    data = tar_bytes(sorted(imagefolder(top="pets").items()), "gz")
    client.put_object(Bucket=bucket, Key="datasets/pets.tar.gz", Body=data)
    url = f"s3://{bucket}/datasets/pets.tar.gz"
    cfg = make_cfg(source=url, sha256=sha256(data), s3_endpoint_url=server.endpoint_url)
    info = acquire(cfg, tmp_path / "raw", backoff_s=FAST_BACKOFF)
    assert (info.kind, info.layout, info.url, info.final_url) == ("s3", "files", url, url)
    assert info.size_bytes == len(data) and info.sha256 == sha256(data)
    assert info.extra["stripped_top_folder"] == "pets"
    assert [i.item_id for i in list_items(tmp_path / "raw")] == sorted(imagefolder())
    assert json.loads((tmp_path / "raw/source.json").read_text())["extra"]["s3_endpoint_url"] == server.endpoint_url


def test_s3_endpoint_from_environment(s3, make_cfg, tmp_path, monkeypatch):
    server, client, bucket = s3
    client.put_object(Bucket=bucket, Key="labels.csv", Body=b"file,label\na.png,cat\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
    result = fetch_to_file(f"s3://{bucket}/labels.csv", tmp_path / "labels.csv", make_cfg(), backoff_s=FAST_BACKOFF)
    assert (tmp_path / "labels.csv").read_bytes() == b"file,label\na.png,cat\n"
    assert result.size_bytes == 21


def test_s3_missing_object_and_bucket(s3, make_cfg, tmp_path):
    server, _client, bucket = s3
    cfg = make_cfg(s3_endpoint_url=server.endpoint_url)
    for url in (f"s3://{bucket}/nope.tar", "s3://no-such-bucket-here/x.tar"):
        with pytest.raises(SourceError, match=f"^{url}: no such bucket or object$"):
            fetch_to_file(url, tmp_path / "x", cfg, backoff_s=FAST_BACKOFF)
    assert not (tmp_path / "x").exists()


def test_s3_unreachable_endpoint(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cfg = make_cfg(s3_endpoint_url=f"http://127.0.0.1:{free_port()}", retries=2, timeout_s=1.0)
    with pytest.raises(SourceError, match=r"^s3://b/k\.tar: cannot connect to the S3 endpoint .*gave up after 2 attempts"):
        fetch_to_file("s3://b/k.tar", tmp_path / "x", cfg, backoff_s=FAST_BACKOFF)


def test_s3_wrong_checksum(s3, make_cfg, tmp_path):
    server, client, bucket = s3
    client.put_object(Bucket=bucket, Key="a.zip", Body=b"PK\x05\x06" + b"\x00" * 18)
    cfg = make_cfg(s3_endpoint_url=server.endpoint_url, source=f"s3://{bucket}/a.zip", sha256="1" * 64)
    with pytest.raises(SourceError, match="checksum mismatch: expected sha256 1{64}, got"):
        acquire(cfg, tmp_path / "raw", backoff_s=FAST_BACKOFF)
    assert not (tmp_path / "raw").exists()
