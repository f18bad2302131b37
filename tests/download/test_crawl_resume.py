"""Kill the download stage half-way through a crawl (SIGKILL, a real subprocess) and run it again.

The server's own request log is the proof: every image the first run finished is requested
exactly once across both runs; only the requests in flight at the kill are repeated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml
from crawl_server import CrawlServer, Page, png_bytes

from imgpipe.download.acquire import acquire
from imgpipe.params.download import CrawlParams, DownloadParams
from imgpipe.rawdata import CRAWL_ITEMS, list_items

REPO = Path(__file__).resolve().parents[2]
N = 1500
CONCURRENCY = 4
ROBOTS = "/robots.txt"


def test_a_killed_crawl_resumes_without_fetching_finished_images_again(tmp_path):
    with CrawlServer() as srv:
        urls = [srv.add(f"/img/{i:05d}.png", Page(body=png_bytes(i), delay_s=0.003)) for i in range(N)]
        pd.DataFrame({"url": urls, "label": [f"c{i % 3}" for i in range(N)]}).to_csv(tmp_path / "list.csv",
                                                                                      index=False)
        crawl = {"allow_private": True, "concurrency": CONCURRENCY, "per_host_rate": 0, "timeout_s": 5.0,
                 "shard_size": 400}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(
            {"paths": {"raw": "data/raw"},
             "download": {"source": "list.csv", "cache_dir": "cache", "crawl": crawl}}))
        env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "stages.download"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # Images only: the server's log also holds the one robots.txt request of the run.
        while (sum(path != ROBOTS for path in list(srv.log)) < N // 2 and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        first = Counter(path for path in srv.log if path != ROBOTS)  # robots.txt: once per run
        assert N // 2 <= sum(first.values()) < N
        assert not (tmp_path / "data" / "raw").exists()  # no half-written output

        # What the killed run had finished, as its shard logs on disk say.
        finished = set()
        for log in (tmp_path / "cache" / "crawl" / "shards").glob("*/log.jsonl"):
            for line in log.read_text().splitlines():
                rec = json.loads(line)
                assert rec["status"] == "ok"
                finished.add(rec["url"].removeprefix(srv.base_url))
        assert len(finished) >= N // 2 - CONCURRENCY

        before = len(srv.log)
        cfg = DownloadParams(source=str(tmp_path / "list.csv"), cache_dir=tmp_path / "cache",
                             crawl=CrawlParams(**crawl))
        acquire(cfg, tmp_path / "data" / "raw", backoff_s=0.01)
        second = Counter(path for path in srv.log[before:] if path != ROBOTS)

    assert not finished & set(second), "a finished image was fetched again"
    total = first + second
    assert set(total) == {f"/img/{i:05d}.png" for i in range(N)}
    repeated = [path for path, hits in total.items() if hits > 1]
    assert len(repeated) <= CONCURRENCY  # only what was in flight at the kill
    items = pd.read_parquet(tmp_path / "data" / "raw" / CRAWL_ITEMS)
    assert (items["status"] == "ok").all() and len(list_items(tmp_path / "data" / "raw")) == N
