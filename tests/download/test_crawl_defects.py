"""Crawler defects of issue 16, each against the real loopback server (or the classifier itself
where loopback cannot produce the failure): malformed URLs, trickled headers, unreachable hosts,
HTTP-date Retry-After, a closed port in single downloads, a stale failure report."""

from __future__ import annotations

import errno
import socket
import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pandas as pd
import pytest
from crawl_server import CrawlServer, Page, png_bytes
from test_crawl import run_crawl

from imgpipe.download.crawl_fetch import FetchSettings, _classify
from imgpipe.download.crawl_shard import is_lasting, policy_of, reusable
from imgpipe.download.fetch import _retry_after, describe_network_error, fetch_to_file
from imgpipe.errors import SourceError
from imgpipe.params.download import DownloadParams
from imgpipe.rawdata import CRAWL_ITEMS


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_malformed_urls_and_locations_are_rows_not_a_crash(tmp_path):
    with CrawlServer() as srv:
        good = srv.add("/a.png", Page(body=png_bytes(1)))
        srv.add("/to-bad", Page(kind="redirect", location="http://[x"))
        urls = [good, "http://[::1", "http://127.0.0.1:99999/x.png", "http:///nohost.png",
                srv.base_url + "/to-bad", "http://u:secret@[::1/x.png"]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        raw = run_crawl(str(listing), tmp_path, label_column="", min_success_rate=0)
    items = pd.read_parquet(raw / CRAWL_ITEMS)
    assert items["status"].tolist() == ["ok"] + ["bad_url"] * 5
    assert "redirect to a malformed URL 'http://[x'" in items["detail"].iloc[4]
    assert items["url"].iloc[5] == "http://u:***@[::1/x.png"  # the password is still hidden


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add("/trickle.png", Page(kind="trickle", delay_s=0.05)), srv.add("/a.png", Page(body=png_bytes(1)))]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        started = time.monotonic()
        raw = run_crawl(str(listing), tmp_path, label_column="", timeout_s=0.5, deadline_s=1.0, retries=1,
                        min_success_rate=0)
        took = time.monotonic() - started
    items = pd.read_parquet(raw / CRAWL_ITEMS)
    assert items["status"].tolist() == ["timeout", "ok"]
    assert "not complete after 1s" in items["detail"].iloc[0]
    assert took < 4  # the server would trickle for 8 s


def test_refused_and_unreachable_hosts_have_their_own_lasting_reasons():
    import urllib3.exceptions as u3

    for code, reason, line in ((errno.EHOSTUNREACH, "unreachable", "no route to host"),
                               (errno.ENETUNREACH, "unreachable", "network unreachable"),
                               (errno.ECONNREFUSED, "refused", "connection refused")):
        cause = (ConnectionRefusedError if code == errno.ECONNREFUSED else OSError)(code, "boom")
        try:
            try:
                raise cause
            except OSError as exc:
                raise u3.NewConnectionError(None, f"Failed to establish a new connection: {exc}") from exc
        except u3.NewConnectionError as exc:
            wrapped = u3.MaxRetryError(None, "http://h/x", exc)
            assert describe_network_error(wrapped, 1.0) == line
            fail = _classify(wrapped, 1.0)
        assert (fail.status, fail.detail) == (reason, line)
        assert is_lasting(reason)  # not fetched again on every run
    settings = FetchSettings()
    assert reusable({"url": "http://h/x", "status": "unreachable", "policy": policy_of(settings)}, settings)
    assert not is_lasting("timeout")


def test_a_refused_url_is_not_requested_again_by_the_next_run(tmp_path, capsys):
    with CrawlServer() as srv:
        urls = [srv.add("/a.png", Page(body=png_bytes(1))), f"http://127.0.0.1:{closed_port()}/x.png"]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        run_crawl(str(listing), tmp_path, label_column="", min_success_rate=0)
        capsys.readouterr()
        raw = run_crawl(str(listing), tmp_path, label_column="", min_success_rate=0)
    assert "0 requested this run" in capsys.readouterr().err
    assert pd.read_parquet(raw / CRAWL_ITEMS)["status"].tolist() == ["ok", "refused"]


def test_retry_after_as_an_http_date():
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 1, 2, 3, 4, 35, tzinfo=UTC), usegmt=True)
    assert _retry_after(later, now=now) == 30.0
    assert _retry_after("Fri, 01 Jan 2021 00:00:00 GMT", now=now) == 0.0  # in the past: no wait
    assert _retry_after("7") == 7.0 and _retry_after("soon") is None and _retry_after(None) is None


def test_a_closed_port_gives_up_quickly_and_says_each_retry(tmp_path, capsys):
    url = f"http://127.0.0.1:{closed_port()}/data.tar.gz"
    cfg = DownloadParams(cache_dir=tmp_path / "cache", retries=5, timeout_s=1.0)
    with pytest.raises(SourceError, match=r": connection refused \(gave up after 2 attempts\)$"):
        fetch_to_file(url, tmp_path / "x", cfg, backoff_s=0.01)
    err = capsys.readouterr().err
    assert f"download: {url}: connection refused; attempt 2 of 2 in " in err


def test_the_failure_report_goes_once_a_run_succeeds(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add("/a.png", Page(body=png_bytes(1))), srv.base_url + "/gone.png"]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        with pytest.raises(SourceError, match="below download.crawl.min_success_rate"):
            run_crawl(str(listing), tmp_path, label_column="", min_success_rate=0.9)
        report = tmp_path / "cache" / "crawl" / "last-failures.csv"
        assert report.is_file()
        run_crawl(str(listing), tmp_path, label_column="", min_success_rate=0.5)
    assert not report.exists()


def test_an_unforeseen_exception_is_a_row_naming_its_type():
    from imgpipe.download.crawl_fetch import Fetcher

    fetcher = Fetcher(FetchSettings())

    def broken(url):
        raise RuntimeError("a bug of ours")

    fetcher._consent = broken
    try:
        outcome = fetcher.fetch("http://example.invalid/a.png")
    finally:
        fetcher.close()
    assert (outcome.status, outcome.detail) == ("error", "unexpected RuntimeError: a bug of ours")
