"""Consent and provenance of crawled sources (issue 18) against the real loopback server:
robots.txt, X-Robots-Tag, the opt-out list (each refusal a row with its reason, the image never
requested), the User-Agent sent, and images per licence for the card."""

from __future__ import annotations

import pandas as pd
import pytest
from crawl_server import CrawlServer, Page, png_bytes
from test_crawl import run_crawl, tree_bytes

from imgpipe.card import build_card, render_markdown
from imgpipe.download.crawl_consent import (
    crawl_licence_counts,
    opt_out_directives,
    opted_out,
    read_opt_out_list,
)
from imgpipe.errors import SourceError
from imgpipe.rawdata import CRAWL_ITEMS, SourceInfo

AGENT = "imgpipe-crawl/1 (+https://example.invalid/crawl)"
ROBOTS = """User-agent: otherbot
Disallow: /

User-agent: imgpipe-crawl
Disallow: /private/
Allow: /private/open.png

User-agent: *
Disallow: /nobody/
"""


def crawl(tmp_path, urls, **overrides):
    listing = tmp_path / "list.csv"
    pd.DataFrame({"url": urls}).to_csv(listing, index=False)
    values = dict(label_column="", min_success_rate=0, user_agent=AGENT)
    values.update(overrides)
    raw = run_crawl(str(listing), tmp_path / "out", **values)
    return raw, pd.read_parquet(raw / CRAWL_ITEMS)


def test_robots_txt_is_read_once_per_host_and_honoured_for_our_agent(tmp_path):
    with CrawlServer() as srv:
        srv.add("/robots.txt", Page(body=ROBOTS.encode(), content_type="text/plain"))
        urls = [srv.add(f"/img/{i}.png", Page(body=png_bytes(i))) for i in range(12)]
        urls += [srv.add("/private/a.png", Page(body=png_bytes(100))),
                 srv.add("/private/open.png", Page(body=png_bytes(101))),
                 srv.add("/nobody/b.png", Page(body=png_bytes(102))),  # only for agents without a group
                 srv.add("/jump", Page(kind="redirect", location="/private/c.png"))]
        _, items = crawl(tmp_path, urls, concurrency=8)
        hits = srv.hits()
        assert srv.agents == {AGENT}  # on every request, robots.txt included
    assert hits["/robots.txt"] == 1
    assert items["status"].tolist() == ["ok"] * 12 + ["robots_disallowed", "ok", "ok", "robots_disallowed"]
    assert "robots.txt disallows it for imgpipe-crawl" in items["detail"].iloc[12]
    assert hits["/private/a.png"] == 0 and hits["/private/c.png"] == 0  # redirect hops are judged too


@pytest.mark.parametrize("status, expected", [(404, "ok"), (403, "ok"), (503, "robots_disallowed")])
def test_a_robots_txt_error_allows_on_4xx_and_disallows_on_5xx(tmp_path, status, expected):
    with CrawlServer() as srv:
        srv.add("/robots.txt", Page(kind="status", status=status))
        _, items = crawl(tmp_path, [srv.add("/a.png", Page(body=png_bytes(1)))])
        assert (srv.hits()["/a.png"] == 1) is (expected == "ok")
    assert items["status"].tolist() == [expected]
    if expected != "ok":
        assert "robots.txt answered HTTP 503" in items["detail"].iloc[0]


def test_x_robots_tag_opt_outs_are_honoured_unless_turned_off(tmp_path):
    with CrawlServer() as srv:
        tags = ["noai", "noimageai, noindex", "otherbot: noai", "imgpipe-crawl: noml", "googlebot: none"]
        urls = [srv.add(f"/{i}.png", Page(body=png_bytes(i), headers={"X-Robots-Tag": tag}))
                for i, tag in enumerate(tags)]
        raw, items = crawl(tmp_path, urls)
        assert items["status"].tolist() == ["opt_out_header", "opt_out_header", "ok", "opt_out_header", "ok"]
        assert items["detail"].tolist()[:2] == ["X-Robots-Tag: noai", "X-Robots-Tag: noimageai"]
        info = SourceInfo.read(raw)
        assert info.extra["consent_refusals"] == {"robots_disallowed": 0, "opt_out_header": 3, "opt_out_list": 0}
        # Turned off, the same cache fetches the refused images (a changed policy is asked again).
        _, items = crawl(tmp_path, urls, honour_opt_out=False)
    assert (items["status"] == "ok").all()


def test_the_opt_out_list_refuses_domains_and_prefixes_without_a_request(tmp_path):
    with CrawlServer() as srv:
        srv.add("/artist/b.png", Page(body=png_bytes(3)))
        port = srv.base_url.rsplit(":", 1)[1]
        urls = [srv.add("/ok.png", Page(body=png_bytes(1))), srv.add("/artist/a.png", Page(body=png_bytes(2))),
                srv.base_url + "/to-artist", f"http://127.0.0.2:{port}/x.png"]  # a domain entry (no DNS here)
        srv.add("/to-artist", Page(kind="redirect", location="/artist/b.png"))
        _, first = crawl(tmp_path, urls)
        assert first["status"].tolist() == ["ok", "ok", "ok", "refused"]
        opt_out = tmp_path / "opt-out.txt"
        opt_out.write_text(f"# people who asked not to be crawled\n{srv.base_url}/artist/\n127.0.0.2\n")
        before = len(srv.log)
        raw, items = crawl(tmp_path, urls, opt_out_list=str(opt_out))
        later = srv.log[before:]
    assert items["status"].tolist() == ["ok"] + ["opt_out_list"] * 3
    assert f"matches '{srv.base_url}/artist/'" in items["detail"].iloc[1]
    assert "/artist/a.png" not in later and "/artist/b.png" not in later  # a fetched image is dropped too
    assert SourceInfo.read(raw).extra["consent_refusals"]["opt_out_list"] == 3


def test_opt_out_list_and_header_parsing(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("ftp://x/\n")
    with pytest.raises(SourceError, match=r"bad.txt:1: 'ftp://x/' is neither a domain nor an http\(s\) URL prefix"):
        read_opt_out_list(str(bad))
    with pytest.raises(SourceError, match=r"nope.txt: no such file \(download.crawl.opt_out_list\)"):
        read_opt_out_list(str(tmp_path / "nope.txt"))
    entries = ("example.com", "https://h.org/a/")
    assert opted_out("http://img.EXAMPLE.com/x.png", entries) == "example.com"
    assert opted_out("http://notexample.com/x.png", entries) is None
    assert opted_out("https://H.org/a/b.png", entries) == "https://h.org/a/"
    assert opted_out("https://h.org/ab.png", entries) is None
    assert opt_out_directives("noindex, imgpipe-crawl: noai, noml", "imgpipe-crawl/1") == ["noai", "noml"]
    assert opt_out_directives("otherbot: noai, noml", "imgpipe-crawl/1") == []
    assert opt_out_directives("unavailable_after: 25 Jun 2010 15:00:00 PST, noai", "imgpipe-crawl/1") == ["noai"]


def test_licences_reach_the_item_table_and_the_card(tmp_path):
    with CrawlServer() as srv:
        frame = pd.DataFrame({"url": [srv.add(f"/{i}.png", Page(body=png_bytes(i % 4))) for i in range(6)],
                              "label": ["a", "b"] * 3,
                              "license": ["cc0", "cc-by", "cc0", "", "cc0", "cc-by"]})
        srv.add("/robots.txt", Page(body=b"User-agent: *\nDisallow: /5.png\n", content_type="text/plain"))
        listing = tmp_path / "list.csv"
        frame.to_csv(listing, index=False)
        raw = run_crawl(str(listing), tmp_path / "a", extra_columns=["license"], min_success_rate=0)
        again = run_crawl(str(listing), tmp_path / "b", extra_columns=["license"], min_success_rate=0)
    items = pd.read_parquet(raw / CRAWL_ITEMS)
    assert items["license"].tolist() == frame["license"].tolist()
    # 4 distinct images (rows 4 and 5 repeat rows 0 and 1's bytes; row 5 is refused by robots.txt)
    assert crawl_licence_counts(raw) == {"cc0": 2, "cc-by": 1, "unknown": 1}
    info = SourceInfo.read(raw)
    assert info.extra["licences"] == crawl_licence_counts(raw)
    assert tree_bytes(again) == tree_bytes(raw)  # consent and licences keep the outputs deterministic
    source = {"source": str(listing), "kind": "crawl", "extra": info.extra}
    card = build_card(dataset=pd.DataFrame({"item_id": ["x"], "pixel_sha256": ["0" * 64], "label": ["a"],
                                            "split": ["train"]}),
                      quarantine=None, classes=["a"], source=source, quality={}, expectations=None)
    assert card["crawl"] == {"images_per_licence": {"cc0": 2, "cc-by": 1, "unknown": 1},
                             "refused_by_consent_rule": {"robots_disallowed": 1, "opt_out_header": 0,
                                                         "opt_out_list": 0}}
    md = render_markdown(card)
    assert "| cc-by | 1 |" in md and "| robots_disallowed | 1 |" in md


def test_a_take_down_by_url_keeps_a_crawled_image_out_of_the_packs(tmp_path):
    """annotations/exclude.csv naming a URL: the crawled image is fetched (its URL is known only
    from the list) but never packed into data/raw (issue 18: take-downs that really delete)."""
    from test_crawl import FAST, crawl_params

    from imgpipe.download.acquire import acquire
    from imgpipe.params.download import DownloadParams
    from imgpipe.params.privacy import PrivacyParams
    from imgpipe.rawdata import list_items, read_item_bytes

    with CrawlServer() as srv:
        urls = [srv.add(f"/img/{i}.png", Page(body=png_bytes(i))) for i in range(3)]
        listing = tmp_path / "list.csv"
        pd.DataFrame({"url": urls}).to_csv(listing, index=False)
        exclude = tmp_path / "exclude.csv"
        exclude.write_text(f"url,reason\n{urls[1]},asked to be removed\n")
        cfg = DownloadParams(source=str(listing), cache_dir=tmp_path / "cache",
                             crawl=crawl_params(label_column="", min_success_rate=0, user_agent=AGENT))
        acquire(cfg, tmp_path / "raw", backoff_s=FAST,
                privacy=PrivacyParams(exclude_file=str(exclude), faces="keep"))
    kept = {read_item_bytes(tmp_path / "raw", item) for item in list_items(tmp_path / "raw")}
    assert kept == {png_bytes(0), png_bytes(2)}
