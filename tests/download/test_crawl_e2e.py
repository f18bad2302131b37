"""`dvc repro labels` in a clone whose download.source is a URL list served on 127.0.0.1."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import yaml
from crawl_server import CrawlServer, Page, png_bytes

_spec = importlib.util.spec_from_file_location("e2e_helpers", Path(__file__).resolve().parents[1] / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)


@pytest.mark.e2e
def test_dvc_repro_labels_on_a_crawled_list(tmp_path):
    with CrawlServer() as srv:
        rows = [(srv.add(f"/{i}.png", Page(body=png_bytes(i))), ["cat", "dog"][i % 2]) for i in range(24)]
        rows.append((srv.base_url + "/gone.png", "cat"))
        crawl = {**yaml.safe_load((e2e.PROJECT / "params.yaml").read_text())["download"]["crawl"],
                 "allow_private": True, "per_host_rate": 0}
        clone = e2e.make_clone(tmp_path / "project", {"download.source": "annotations/urls.csv",
                                                      "download.crawl": crawl})
        (clone.root / "annotations").mkdir(exist_ok=True)
        pd.DataFrame(rows, columns=["url", "label"]).to_csv(clone.root / "annotations" / "urls.csv", index=False)
        clone.commit("a URL list")
        proc = clone.dvc("repro", "labels")
        assert e2e.ran_stages(proc.stdout) == ["download", "labels"]
        again = clone.dvc("repro", "labels")
        assert e2e.ran_stages(again.stdout) == []
        requests_made = len(srv.log)
        forced = clone.dvc("repro", "-f", "-s", "download")  # a forced rerun reuses the crawl cache
        assert e2e.ran_stages(forced.stdout) == ["download"]
        assert len(srv.log) == requests_made  # images and the lasting 404 come from the crawl state
    labels = pd.read_parquet(clone.root / "data" / "labels" / "labels.parquet")
    assert sorted(labels["label"].value_counts().to_dict().items()) == [("cat", 12), ("dog", 12)]
    items = pd.read_parquet(clone.root / "data" / "raw" / "crawl" / "items.parquet")
    assert items["status"].tolist() == ["ok"] * 24 + ["http_404"]
