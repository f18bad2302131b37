"""The URL-list (crawl) source against a real fault-injecting HTTP server on 127.0.0.1.

One module-wide server serves 2,000 generated PNGs plus planted faults; the first crawl of its
list is shared by the checks below, and later runs (other concurrency and shard size, Dask on
two local worker processes) must give byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from crawl_server import CrawlServer, Page, png_bytes

from imgpipe.download.acquire import acquire
from imgpipe.download.crawl_fetch import _blocked, image_extension
from imgpipe.download.crawl_list import is_url_list, list_format
from imgpipe.errors import SourceError
from imgpipe.params.download import CrawlParams, DownloadParams
from imgpipe.rawdata import CRAWL_FAILURES, CRAWL_ITEMS, FILES_DIR, PackReader, SourceInfo, list_items

FAST = 0.01
N_IMAGES = 2000
CAP = 256 * 1024

# path -> the reason its row must carry
FAULTS = {
    "/missing.png": "http_404",
    "/e500.png": "http_500",
    "/slow.png": "timeout",
    "/page.png": "not_an_image",
    "/fake.jpg": "not_an_image",
    "/huge.png": "too_large",
    "/endless.png": "too_large",
    "/l1": "redirect_loop",
    "/c0": "too_many_redirects",
    "/reset.png": "reset",
    "/trunc.png": "truncated",
}


def crawl_params(**overrides) -> CrawlParams:
    values = dict(allow_private=True, timeout_s=0.5, retries=2, per_host_rate=0, per_host_connections=64,
                  concurrency=32, max_image_bytes=CAP, min_success_rate=0.5, max_redirects=5)
    values.update(overrides)
    return CrawlParams(**values)


def run_crawl(source: str, tmp: Path, **overrides) -> Path:
    cfg = DownloadParams(source=source, cache_dir=tmp / "cache", crawl=crawl_params(**overrides))
    acquire(cfg, tmp / "raw", backoff_s=FAST)
    return tmp / "raw"


def tree_bytes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The server, the list (CSV with label and one extra column) and a first crawl of it."""
    tmp = tmp_path_factory.mktemp("crawl")
    with CrawlServer() as srv:
        rows, bodies = [], {}
        for i in range(N_IMAGES):
            body = png_bytes(i)
            url = srv.add(f"/img/{i:06d}.png", Page(body=body))
            bodies[url] = body
            rows.append((url, f"class{i % 5}", f"id{i}"))
        dup = png_bytes(42)  # the same bytes as /img/000042.png under two more URLs
        for name in ("/dup-a.png", "/dup-b.png"):
            bodies[srv.add(name, Page(body=dup))] = dup
            rows.append((srv.base_url + name, "class2", name))
        rows.append((rows[3][0], "class3", "repeat"))  # a duplicate URL
        srv.add("/e500.png", Page(kind="status", status=500))
        srv.add("/slow.png", Page(kind="slow", body=png_bytes(9001), delay_s=2.0))
        srv.add("/page.png", Page(kind="html"))
        srv.add("/fake.jpg", Page(kind="html", content_type="image/jpeg"))
        srv.add("/huge.png", Page(kind="huge"))
        srv.add("/endless.png", Page(kind="endless"))
        srv.add("/r1", Page(kind="redirect", location="/r2"))
        srv.add("/r2", Page(kind="redirect", location=srv.base_url + "/r3"))
        srv.add("/r3", Page(kind="redirect", location="/img/000007.png"))
        srv.add("/l1", Page(kind="redirect", location="/l2"))
        srv.add("/l2", Page(kind="redirect", location="/l1"))
        for i in range(9):
            srv.add(f"/c{i}", Page(kind="redirect", location=f"/c{i + 1}"))
        srv.add("/reset.png", Page(kind="reset"))
        srv.add("/trunc.png", Page(kind="truncated", body=png_bytes(777)))
        for path in FAULTS:
            rows.append((srv.base_url + path, "class0", "fault"))
        rows.append((srv.base_url + "/r1", "class2", "chain"))
        rows.append(("ftp://127.0.0.1/x.png", "class0", "scheme"))
        rows.append(("http://127.0.0.1:9/closed.png", "class0", "refused"))  # discard port: nothing listens
        rows.append(("", "class0", "empty"))
        listing = tmp / "list.csv"
        pd.DataFrame(rows, columns=["url", "label", "key"]).to_csv(listing, index=False)
        raw = run_crawl(str(listing), tmp / "first", extra_columns=["key"])
        first_log = srv.log
        yield {"srv": srv, "list": listing, "raw": raw, "bodies": bodies, "log": first_log, "tmp": tmp}


def test_every_fault_is_a_row_with_its_reason(site):
    base = site["srv"].base_url
    items = pd.read_parquet(site["raw"] / CRAWL_ITEMS)
    status = dict(zip(items["url"], items["status"], strict=False))
    for path, reason in FAULTS.items():
        assert status[base + path] == reason, (path, items.set_index("url").loc[base + path, "detail"])
    assert status["ftp://127.0.0.1/x.png"] == "bad_scheme"
    assert status["http://127.0.0.1:9/closed.png"] == "refused"
    assert status[""] == "bad_url"
    failures = pd.read_parquet(site["raw"] / CRAWL_FAILURES)
    assert list(failures["url"]) == list(items.loc[items["status"] != "ok", "url"])
    assert set(failures["status"]) >= set(FAULTS.values())
    assert (failures["detail"] != "").all()
    info = SourceInfo.read(site["raw"])
    assert info.kind == "crawl" and info.extra["failures"]["too_large"] == 2
    assert info.extra["summary"]["failed urls"] == len(failures)


def test_every_good_image_is_packed_once_with_its_urls(site):
    raw, bodies = site["raw"], site["bodies"]
    items = pd.read_parquet(raw / CRAWL_ITEMS)
    ok = items[items["status"] == "ok"]
    assert set(ok["url"]) == set(bodies) | {site["srv"].base_url + "/r1"}
    # Duplicate bytes: one image, every URL recorded against it.
    dup = ok[ok["key"].isin(["/dup-a.png", "/dup-b.png", "id42"])]
    assert dup["item_id"].nunique() == 1 and len(dup) == 3
    chain = ok[ok["key"] == "chain"].iloc[0]
    assert chain["final_url"].endswith("/img/000007.png")
    assert chain["item_id"] == ok[ok["key"] == "id7"].iloc[0]["item_id"]
    packed = list_items(raw)
    assert [i.item_id for i in packed] == list(dict.fromkeys(ok["item_id"]))  # the list's order
    assert len(packed) == N_IMAGES
    by_item = dict(zip(ok["item_id"], ok["final_url"], strict=False))
    with PackReader(raw) as packs:
        for item in packed:
            data = packs.read(item)
            assert data == bodies[by_item[item.item_id]]
            assert item.item_id == f"images/{hashlib.sha256(data).hexdigest()[:32]}.png"
    assert (ok["bytes"] > 0).all() and (ok["sha256"].str.len() == 64).all()


def test_duplicate_urls_are_fetched_once(site):
    hits = {}
    for path in site["log"]:
        hits[path] = hits.get(path, 0) + 1
    assert hits["/img/000003.png"] == 1  # listed twice
    assert all(hits[f"/img/{i:06d}.png"] == 1 for i in range(N_IMAGES) if i != 7)
    assert hits["/img/000007.png"] == 2  # once itself, once at the end of the /r1 chain
    assert hits["/e500.png"] == 2 and hits["/missing.png"] == 1  # 5xx retried, 404 not


def test_labels_file_joins_labels_to_images(site):
    raw = site["raw"]
    info = SourceInfo.read(raw)
    assert info.label_file == "labels.csv"
    labels = pd.read_csv(raw / FILES_DIR / "labels.csv", dtype=str)
    items = pd.read_parquet(raw / CRAWL_ITEMS)
    ok = items[items["status"] == "ok"]
    expected = set(zip(ok["item_id"], ok["label"], strict=True))
    assert set(zip(labels["file"], labels["label"], strict=True)) == expected
    assert len(labels) == len(expected)  # no repeated pairs


def test_a_rerun_with_other_concurrency_and_shards_gives_the_same_bytes(site):
    before = len(site["srv"].log)
    raw = run_crawl(str(site["list"]), site["tmp"] / "second", extra_columns=["key"], concurrency=3,
                    shard_size=450)
    assert len(site["srv"].log) - before >= N_IMAGES  # a fresh cache: everything fetched again
    assert tree_bytes(raw) == tree_bytes(site["raw"])


def test_dask_on_two_local_workers_gives_the_same_bytes(site, monkeypatch):
    distributed = pytest.importorskip("distributed")
    # Starting a cluster sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in this process for good; let
    # monkeypatch put them back so later tests (and the stages they start) see the usual threads.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.setenv(name, "recorded")  # records the value before (or its absence) for teardown
        monkeypatch.delenv(name)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        raw = run_crawl(str(site["list"]), site["tmp"] / "dask", extra_columns=["key"], shard_size=600,
                        engine="dask", dask_address=cluster.scheduler_address)
    assert tree_bytes(raw) == tree_bytes(site["raw"])
    assert len(list((site["tmp"] / "dask" / "cache" / "crawl" / "shards").iterdir())) == 4


def test_a_rerun_on_a_warm_cache_fetches_only_transient_failures(site):
    import shutil

    work = site["tmp"] / "warm"
    shutil.copytree(site["tmp"] / "first" / "cache", work / "cache")
    before = len(site["srv"].log)
    raw = run_crawl(str(site["list"]), work, extra_columns=["key"])
    again = set(site["srv"].log[before:])
    # 500, timeout, reset and truncated are worth another try; images and lasting failures are not
    # (robots.txt is read once per host per run, before the first image it governs).
    assert again == {"/robots.txt", "/e500.png", "/slow.png", "/reset.png", "/trunc.png"}
    assert tree_bytes(raw) == tree_bytes(site["raw"])


def test_private_addresses_are_refused_unless_allowed(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add(f"/p{i}.png", Page(body=png_bytes(i))) for i in range(3)]
        port = urls[0].split(":")[2].split("/")[0]
        urls += [f"http://localhost:{port}/p0.png", f"http://[::1]:{port}/p1.png"]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        with pytest.raises(SourceError, match=r"fetched 0 of 5 unique URLs .*private_address x5"):
            run_crawl(str(listing), tmp_path, allow_private=False, label_column="", min_success_rate=0.5)
        assert srv.log == []  # refused before any connection
        raw = run_crawl(str(listing), tmp_path / "ok", allow_private=False, label_column="",
                        min_success_rate=0)
        items = pd.read_parquet(raw / CRAWL_ITEMS)
        assert set(items["status"]) == {"private_address"}
        assert "non-public address" in items["detail"].iloc[0]
        assert "download.crawl.allow_private" in items["detail"].iloc[0]
        assert not (raw / FILES_DIR / "labels.csv").exists()


@pytest.mark.parametrize("ip, blocked", [
    ("127.0.0.1", True), ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True),
    ("169.254.169.254", True), ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True),
    ("::1", True), ("fe80::1", True), ("fd00::1", True), ("::ffff:10.0.0.1", True),
    ("8.8.8.8", False), ("2606:4700:4700::1111", False), ("::ffff:8.8.8.8", False),
    # IPv6 site-local, and IPv4 hosts carried inside IPv6: mapped, 6to4, Teredo, NAT64, compatible
    ("fec0::1", True), ("::ffff:127.0.0.1", True), ("2002:7f00:1::", True), ("2002:a00:1::1", True),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True), ("64:ff9b::7f00:1", True), ("::7f00:1", True),
    ("2002:808:808::1", False), ("64:ff9b::808:808", False),
])
def test_address_policy(ip, blocked):
    assert _blocked(ip) is blocked


def test_below_the_success_rate_the_stage_fails_naming_top_reasons(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add(f"/ok{i}.png", Page(body=png_bytes(i))) for i in range(4)]
        urls += [f"{srv.base_url}/gone{i}.png" for i in range(5)]
        urls.append(srv.add("/page.png", Page(kind="html")))
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls, "label": "a"}).to_csv(listing, index=False)
        with pytest.raises(SourceError) as err:
            run_crawl(str(listing), tmp_path, min_success_rate=0.9)
    message = str(err.value)
    assert "\n" not in message
    assert "fetched 4 of 10 unique URLs (40.0%), below download.crawl.min_success_rate=0.9" in message
    assert "top failure reasons: http_404 x5, not_an_image x1" in message
    assert not (tmp_path / "raw").exists()  # nothing half-written
    report = message.rsplit("every failure: ", 1)[1].rstrip(")")
    assert len(pd.read_csv(report)) == 6


@pytest.mark.parametrize("suffix", ["tsv", "jsonl", "parquet", "csv.gz", "txt"])
def test_list_formats_and_column_params(tmp_path, suffix):
    with CrawlServer() as srv:
        frame = pd.DataFrame({"link": [srv.add(f"/{i}.png", Page(body=png_bytes(i))) for i in range(4)],
                              "cls": [1, 2, 1, 2], "license": ["cc0", "cc-by", "cc0", "cc0"]})
        listing = tmp_path / f"list.{suffix}"
        if suffix == "tsv":
            frame.to_csv(listing, sep="\t", index=False)
        elif suffix == "jsonl":
            frame.to_json(listing, orient="records", lines=True)
        elif suffix == "parquet":
            frame.to_parquet(listing)
        elif suffix == "txt":
            listing.write_text("\n".join(frame["link"]) + "\n\n")
            raw = run_crawl(str(listing), tmp_path)
            items = pd.read_parquet(raw / CRAWL_ITEMS)
            assert (items["status"] == "ok").all() and list(items["label"]) == [""] * 4
            return
        else:
            frame.to_csv(listing, index=False, compression="gzip")
        raw = run_crawl(str(listing), tmp_path, url_column="link", label_column="cls",
                        extra_columns=["license"])
    items = pd.read_parquet(raw / CRAWL_ITEMS)
    assert list(items["label"]) == ["1", "2", "1", "2"]
    assert list(items["license"]) == ["cc0", "cc-by", "cc0", "cc0"]
    assert (items["status"] == "ok").all()


def test_a_remote_list_with_the_urls_prefix(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add(f"/{i}.png", Page(body=png_bytes(i))) for i in range(3)]
        text = "url\tlabel\n" + "".join(f"{u}\tx\n" for u in urls)
        list_url = srv.add("/api/list", Page(body=text.encode(), content_type="text/plain"))
        raw = run_crawl(f"urls:{list_url}", tmp_path, list_format="tsv")
    info = SourceInfo.read(raw)
    assert info.kind == "crawl" and info.url == list_url
    assert len(list_items(raw)) == 3


def test_list_problems_are_one_line(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text("link,label\nhttp://127.0.0.1/a.png,x\n")
    with pytest.raises(SourceError, match=r"list.csv: no column 'url' \(download.crawl.url_column\); the list has: link, label"):
        run_crawl(str(listing), tmp_path)
    listing.write_text("url\nhttp://127.0.0.1/a.png\n")
    with pytest.raises(SourceError, match=r"no column 'label' .*set it to '' for a list without labels"):
        run_crawl(str(listing), tmp_path)
    with pytest.raises(SourceError, match=r"cannot tell the URL list's format"):
        run_crawl("urls:" + str(tmp_path / "list"), tmp_path)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(SourceError, match=r"bad.parquet: cannot read as a parquet URL list"):
        run_crawl(str(bad), tmp_path)


def test_dispatch_and_signatures():
    assert is_url_list("data/list.csv") and is_url_list("https://h/x.jsonl?sig=1") and is_url_list("urls:x")
    assert not is_url_list("data/images.tar.gz") and not is_url_list("cifar10") and not is_url_list("data/folder")
    assert list_format("s3://b/list.tsv.gz") == ("tsv", "gzip")
    assert image_extension(png_bytes(1)[:32]) == ".png"
    assert image_extension(b"\xff\xd8\xff\xe0\x00\x10JFIF") == ".jpg"
    assert image_extension(b"<!doctype html>") is None


def test_damaged_state_is_detected_and_only_lost_images_are_fetched_again(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add(f"/{i}.png", Page(body=png_bytes(i))) for i in range(40)]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls, "label": "a"}).to_csv(listing, index=False)
        first = run_crawl(str(listing), tmp_path / "a")
        want = tree_bytes(first)
        (shard,) = (tmp_path / "a" / "cache" / "crawl" / "shards").iterdir()
        data = shard / "data.bin"
        size = data.stat().st_size
        records = [json.loads(line) for line in (shard / "log.jsonl").read_text().splitlines()]
        lost = {r["url"].removeprefix(srv.base_url) for r in records
                if r["offset"] <= 10 < r["offset"] + r["size"] or r["offset"] + r["size"] > size - 300}
        with open(data, "r+b") as fh:  # a flipped byte in the first image, and the tail cut off
            fh.seek(10)
            byte = fh.read(1)
            fh.seek(10)
            fh.write(bytes([byte[0] ^ 0xFF]))
            fh.truncate(size - 300)
        with open(shard / "log.jsonl", "ab") as fh:
            fh.write(b'{"url": "torn')  # a half-written last line
        before = len(srv.log)
        import shutil

        shutil.rmtree(first)
        again = run_crawl(str(listing), tmp_path / "a")
        refetched = srv.log[before:]
    # the damaged image and those cut at the end, once each (after the host's robots.txt)
    assert refetched[0] == "/robots.txt" and sorted(refetched[1:]) == sorted(lost)
    assert len(lost) >= 2
    assert tree_bytes(again) == want


def test_per_host_connection_limit_and_rate(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add(f"/{i}.png", Page(body=png_bytes(i), delay_s=0.05)) for i in range(24)]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        run_crawl(str(listing), tmp_path / "a", label_column="", concurrency=16, per_host_connections=3)
        assert srv.max_inflight == 3  # 16 threads, but never more than 3 requests to the host at once
        before = len(srv.log)
        run_crawl(str(listing), tmp_path / "b", label_column="", concurrency=16, per_host_rate=40)
        times = srv.times[before:]
    assert len(times) == 25  # robots.txt, then the images, all under the same rate
    assert times[-1] - times[0] >= 24 / 40 * 0.9  # 25 requests at most 40/s
    # Any 5 requests in a row span 4 intervals (less the arrival jitter of a loaded machine).
    assert min(b - a for a, b in zip(times, times[4:], strict=False)) >= 4 / 40 * 0.6


def test_a_lasting_failure_is_reused_only_under_the_same_limits(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add("/small.png", Page(body=png_bytes(1))),
                srv.add("/big.png", Page(body=png_bytes(2, size=64)))]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        big = len(png_bytes(2, size=64))
        raw = run_crawl(str(listing), tmp_path, label_column="", max_image_bytes=big - 1)
        assert pd.read_parquet(raw / CRAWL_ITEMS)["status"].tolist() == ["ok", "too_large"]
        before = len(srv.log)
        raw = run_crawl(str(listing), tmp_path, label_column="", max_image_bytes=big - 1)
        assert srv.log[before:] == []  # same limits: both outcomes stand
        raw = run_crawl(str(listing), tmp_path, label_column="", max_image_bytes=big)
        assert srv.log[before:] == ["/robots.txt", "/big.png"]  # a higher cap asks again for what was too large
        assert pd.read_parquet(raw / CRAWL_ITEMS)["status"].tolist() == ["ok", "ok"]
