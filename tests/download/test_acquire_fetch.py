"""fetch_to_file against a real HTTP server on 127.0.0.1, with faults switched per route."""

from __future__ import annotations

import os
import time

import pytest
from archives import sha256
from servers import FAST_BACKOFF, free_port

from imgpipe.download.fetch import describe_network_error, fetch_to_file, redact
from imgpipe.errors import ChecksumMismatch, SourceError

BODY = os.urandom(300_000)


def fetch(url, dest, cfg, expected=None):
    return fetch_to_file(url, dest, cfg, expected, backoff_s=FAST_BACKOFF)


def test_plain_download(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY)
    result = fetch(url, tmp_path / "a.bin", make_cfg(), sha256(BODY))
    assert (tmp_path / "a.bin").read_bytes() == BODY
    assert (result.url, result.final_url, result.size_bytes, result.sha256) == (url, url, len(BODY), sha256(BODY))
    assert http_server.route("/a.bin").requests == [None]


def test_dropped_connection_resumes_with_range(http_server, make_cfg, tmp_path):
    third = len(BODY) // 3
    url = http_server.add("/a.bin", BODY, drop_after=third, drops=2)
    result = fetch(url, tmp_path / "a.bin", make_cfg(retries=1), sha256(BODY))
    assert result.sha256 == sha256(BODY) and (tmp_path / "a.bin").read_bytes() == BODY
    # Two drops, each a third of the way on; each resume starts where the last one stopped.
    assert http_server.route("/a.bin").requests == [None, f"bytes={third}-", f"bytes={2 * third}-"]


def test_server_without_range_support_restarts_cleanly(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY, drop_after=len(BODY) // 3, ranges=False)
    result = fetch(url, tmp_path / "a.bin", make_cfg(), sha256(BODY))
    assert result.sha256 == sha256(BODY) and (tmp_path / "a.bin").read_bytes() == BODY
    assert http_server.route("/a.bin").requests == [None, f"bytes={len(BODY) // 3}-"]


def test_changed_file_is_not_stitched(http_server, make_cfg, tmp_path):
    """If-Range: when the ETag changed between attempts, the server sends it all again."""
    url = http_server.add("/a.bin", BODY, drop_after=1000)
    http_server.route("/a.bin").etag = '"v2"'  # the server's file changed after the first response
    assert fetch(url, tmp_path / "a.bin", make_cfg(), sha256(BODY)).sha256 == sha256(BODY)


def test_404_fails_at_once_naming_url_and_status(http_server, make_cfg, tmp_path):
    url = http_server.base_url + "/missing.tar.gz"
    with pytest.raises(SourceError) as info:
        fetch(url, tmp_path / "x", make_cfg())
    assert str(info.value) == f"{url}: HTTP 404 Not Found"
    assert not (tmp_path / "x").exists() and not list((tmp_path / "cache").glob(".*part*"))


def test_500_fails_after_the_retries(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY, status=500, fail_times=-1)
    with pytest.raises(SourceError, match=r"/a\.bin: HTTP 500 Internal Server Error \(gave up after 3 attempts\)$"):
        fetch(url, tmp_path / "x", make_cfg(retries=3))
    assert len(http_server.route("/a.bin").requests) == 3
    assert not (tmp_path / "x").exists() and os.listdir(tmp_path / "cache") == []


def test_transient_503_then_success(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY, status=503, fail_times=2)
    assert fetch(url, tmp_path / "a.bin", make_cfg(retries=3)).sha256 == sha256(BODY)


def test_stalled_server_times_out(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY, delay_s=1.5)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"no data received for 0\.3s \(read timeout\) \(gave up after 2 attempts\)"):
        fetch(url, tmp_path / "x", make_cfg(retries=2, timeout_s=0.3))
    assert time.monotonic() - started < 3


def test_slow_but_steady_server_succeeds(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY[:40_000], chunk=4000, trickle_s=0.02)
    assert fetch(url, tmp_path / "a.bin", make_cfg(timeout_s=1.0)).size_bytes == 40_000


def test_trickle_that_stalls_mid_body_resumes(http_server, make_cfg, tmp_path):
    # 4 chunks, 0.5 s apart, with a 0.3 s read timeout: each attempt gets one chunk and times out,
    # but every attempt made progress, so it keeps resuming although retries=1.
    url = http_server.add("/a.bin", BODY[:4000], chunk=1000, trickle_s=0.5)
    assert fetch(url, tmp_path / "a.bin", make_cfg(retries=1, timeout_s=0.3)).sha256 == sha256(BODY[:4000])
    assert len(http_server.route("/a.bin").requests) == 4


def test_connection_refused(make_cfg, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/a.tar"
    with pytest.raises(SourceError, match=r": connection refused \(gave up after 2 attempts\)$"):
        fetch(url, tmp_path / "x", make_cfg(retries=2))


def test_wrong_checksum_shows_both_values_and_keeps_nothing(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY)
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"previous")
    with pytest.raises(ChecksumMismatch) as info:
        fetch(url, dest, make_cfg(), "0" * 64)
    assert f"expected sha256 {'0' * 64}, got {sha256(BODY)}" in str(info.value)
    assert dest.read_bytes() == b"previous" and os.listdir(tmp_path / "cache") == []
    assert [p.name for p in tmp_path.iterdir()] in (["a.bin", "cache"], ["cache", "a.bin"])


def test_bad_sha256_param(make_cfg, tmp_path):
    with pytest.raises(SourceError, match="64 hex digits"):
        fetch("http://127.0.0.1:1/x", tmp_path / "x", make_cfg(), "abc")


def test_redirect_records_final_url(http_server, make_cfg, tmp_path):
    target = http_server.add("/real/a.bin", BODY)
    url = http_server.add("/short", b"", redirect_to=target)
    result = fetch(url, tmp_path / "a.bin", make_cfg())
    assert result.url == url and result.final_url == target


def test_second_fetch_comes_from_the_cache(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY)
    cfg = make_cfg()
    first = fetch(url, tmp_path / "1", cfg)
    second = fetch(url, tmp_path / "2", cfg, sha256(BODY))
    assert first == second and len(http_server.route("/a.bin").requests) == 1
    # A damaged cache entry is detected and fetched again.
    entry = next(p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".json"))
    entry.write_bytes(b"rot")
    assert fetch(url, tmp_path / "3", cfg).sha256 == sha256(BODY)
    assert len(http_server.route("/a.bin").requests) == 2


def test_local_paths(make_cfg, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(BODY)
    for source in (str(src), src.as_uri()):
        result = fetch(source, tmp_path / "copy.bin", make_cfg(), sha256(BODY))
        assert result.sha256 == sha256(BODY) and (tmp_path / "copy.bin").read_bytes() == BODY
    assert src.read_bytes() == BODY
    with pytest.raises(SourceError, match="no such file or directory"):
        fetch(str(tmp_path / "nope.zip"), tmp_path / "x", make_cfg())
    with pytest.raises(SourceError, match="unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/x", tmp_path / "x", make_cfg())


def test_passwords_never_reach_messages(make_cfg, tmp_path):
    assert redact("https://me:secret@host/x.tar") == "https://me:***@host/x.tar"
    url = f"http://me:secret@127.0.0.1:{free_port()}/a.tar"
    with pytest.raises(SourceError) as info:
        fetch(url, tmp_path / "x", make_cfg(retries=1))
    assert "secret" not in str(info.value) and "me:***@" in str(info.value)


def test_dns_failure_is_described():
    import socket

    import requests
    import urllib3.exceptions as u3

    # Built the way requests reports one, without a network lookup (tests stay on 127.0.0.1).
    conn = type("Conn", (), {"host": "data.example.invalid"})()
    err = u3.NameResolutionError("data.example.invalid", conn, socket.gaierror(-2, "Name or service not known"))
    exc = requests.exceptions.ConnectionError(u3.MaxRetryError(None, "/x", err))
    assert describe_network_error(exc, 5) == "cannot resolve host 'data.example.invalid' (DNS)"


def test_unwritable_cache_is_one_clear_line(http_server, make_cfg, tmp_path):
    url = http_server.add("/a.bin", BODY)
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    with pytest.raises(SourceError, match=r"^http://.*/a\.bin: (File exists|Not a directory) \(.*blocker"):
        fetch(url, tmp_path / "a.bin", make_cfg(cache_dir=tmp_path / "blocker" / "cache"))
