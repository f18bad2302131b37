"""A crawled list flows through preprocess and labels with no label settings: the list's label
column becomes the label table, joined on the crawled images' item ids."""

from __future__ import annotations

import pandas as pd
from crawl_server import CrawlServer, Page, png_bytes

from imgpipe.contracts import LABELS_FILE, MANIFEST_FILE
from imgpipe.download.acquire import acquire
from imgpipe.labels.importer import import_labels as labels_run
from imgpipe.params.download import CrawlParams, DownloadParams
from imgpipe.params.labels import LabelsParams
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.preprocess.pipeline import preprocess_images as preprocess_run
from imgpipe.rawdata import CRAWL_ITEMS


def test_download_preprocess_labels_on_a_crawled_list(tmp_path):
    with CrawlServer() as srv:
        rows = [(srv.add(f"/{i}.png", Page(body=png_bytes(i))), ["cat", "dog", "bird"][i % 3]) for i in range(30)]
        rows.append((srv.add("/same-as-0.png", Page(body=png_bytes(0))), "cat"))  # same bytes, same label
        rows.append((srv.add("/same-as-1.png", Page(body=png_bytes(1))), "cat"))  # same bytes, other label
        rows.append((srv.base_url + "/gone.png", "dog"))
        pd.DataFrame(rows, columns=["url", "label"]).to_csv(tmp_path / "list.csv", index=False)
        cfg = DownloadParams(source=str(tmp_path / "list.csv"), cache_dir=tmp_path / "cache",
                             crawl=CrawlParams(allow_private=True, per_host_rate=0, min_success_rate=0.5))
        acquire(cfg, tmp_path / "raw", backoff_s=0.01)
    preprocess_run(tmp_path / "raw", tmp_path / "pre", PreprocessParams(size=(16, 16), workers=1), progress=False)
    summary = labels_run(tmp_path / "raw", tmp_path / "labels", LabelsParams())

    manifest = pd.read_parquet(tmp_path / "pre" / MANIFEST_FILE)
    labels = pd.read_parquet(tmp_path / "labels" / LABELS_FILE)
    items = pd.read_parquet(tmp_path / "raw" / CRAWL_ITEMS)
    assert len(manifest) == 30  # two duplicate-bytes URLs add no image; the 404 adds none
    assert summary["metrics"]["label_source"] == "csv:labels.csv"
    by_item = dict(zip(labels["item_id"], labels["label"], strict=True))
    first = items.iloc[:30]
    for item_id, label in zip(first["item_id"], first["label"], strict=True):
        if item_id != items.iloc[31]["item_id"]:  # image 1 got two different labels: a conflict
            assert by_item[item_id] == label
    assert items.iloc[31]["item_id"] not in by_item  # quarantined by labels.on_conflict
    assert len(labels) == 29
