"""A URL-list source: fetch every image a CSV/TSV/JSON Lines/parquet list names, at any scale.

``download.source`` names a URL list when it ends in ``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``,
``.parquet`` or ``.txt`` (one URL per line; optionally ``.gz``/``.bz2``/``.xz``), or carries the ``urls:`` prefix (``urls:https://host/list``,
format from ``download.crawl.list_format``). The list itself may be local or remote (fetched and
verified like any source; ``download.sha256`` pins it).

The list's unique URLs are cut into shards of ``download.crawl.shard_size``; each shard is fetched
by :func:`imgpipe.download.crawl_shard.fetch_shard` into resumable state under
``<download.cache_dir>/crawl`` (outside DVC's outputs), here or on Dask distributed workers
(``download.crawl.engine``). The outputs are then assembled from that state in the list's order,
so they do not depend on which download finished first:

- ``packed/images-NNNNN.tar`` + ``packed/index.parquet``: one member per distinct image
  (content-addressed item id ``images/<sha256[:32]><ext>``; the same bytes under two URLs are one
  image), in the order the list first names them;
- ``crawl/items.parquet``: one row per list row: row, url, label, status (``ok`` or a reason),
  detail, bytes, sha256, final_url, item_id, and the extra columns;
- ``crawl/failures.parquet``: the rows whose status is not ``ok``;
- ``files/labels.csv`` (``file,label``) when the list has labels; ``source.json`` names it, so the
  labels stage reads it with no settings.

The stage fails when the share of unique URLs fetched falls below
``download.crawl.min_success_rate``, naming the top failure reasons with their counts.
"""

from __future__ import annotations

import csv
import os
import sys
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from imgpipe.download.crawl_consent import CONSENT_REASONS, licence_counts, read_opt_out_list
from imgpipe.download.crawl_fetch import FetchSettings
from imgpipe.download.crawl_list import URLS_PREFIX, is_url_list, list_format, read_url_list
from imgpipe.download.crawl_shard import ShardResult, ShardSpec, fetch_shard, read_shard
from imgpipe.download.fetch import (
    BACKOFF_S,
    fetch_verified,
    local_path,
    normalize_sha256,
    redact,
    source_kind,
)
from imgpipe.errors import SourceError
from imgpipe.params.download import CrawlParams, DownloadParams
from imgpipe.rawdata import CRAWL_FAILURES, CRAWL_ITEMS, FILES_DIR, PACK_URLS, SourceInfo, write_packs

CRAWL_DIR = "crawl"  # under the download cache: the shards' resumable state
LABEL_FILE = "labels.csv"
ITEM_PREFIX = "images/"

__all__ = ["acquire_crawl", "is_url_list"]


def fetch_settings(c: CrawlParams, backoff_s: float, parallel_shards: int = 1) -> FetchSettings:
    return FetchSettings(timeout_s=c.timeout_s, deadline_s=c.deadline_s, retries=c.retries, backoff_s=backoff_s,
                         max_bytes=c.max_image_bytes, max_redirects=c.max_redirects,
                         allow_private=c.allow_private, per_host_connections=c.per_host_connections,
                         per_host_rate=c.per_host_rate / max(1, parallel_shards), user_agent=c.user_agent,
                         honour_opt_out=c.honour_opt_out, opt_out=read_opt_out_list(c.opt_out_list))


def _read_list(source: str, cfg: DownloadParams, backoff_s: float):
    c = cfg.crawl
    target = source.removeprefix(URLS_PREFIX).strip()
    label = redact(target)
    fmt, compression = list_format(target)
    if c.list_format != "auto":
        fmt = c.list_format
    if fmt is None:
        raise SourceError(f"{label}: cannot tell the URL list's format from its name; set "
                          "download.crawl.list_format to csv, tsv, jsonl, parquet or txt")
    pin = normalize_sha256(cfg.sha256)
    if source_kind(target) == "path" and local_path(target).is_dir():
        raise SourceError(f"{label}: is a folder, not a URL list")
    path, result, _md5 = fetch_verified(target, cfg, sha256=pin, backoff_s=backoff_s)
    rows = read_url_list(path, label, fmt, compression, c.url_column, c.label_column, list(c.extra_columns))
    return label, result, fmt, rows


def _progress_bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="crawl", unit="url", file=sys.stderr, disable=None, mininterval=0.5,
                dynamic_ncols=True)


def _run_local(specs: list[ShardSpec], bar) -> list[ShardResult]:
    counts = Counter()

    def tick(rec: dict) -> None:
        counts["ok" if rec["status"] == "ok" else "failed"] += 1
        bar.update(1)
        bar.set_postfix(ok=counts["ok"], failed=counts["failed"], refresh=False)

    results = []
    for spec in specs:
        results.append(fetch_shard(spec, tick))
        if bar.disable:
            r = results[-1]
            print(f"crawl: shard {spec.index + 1}/{len(specs)}: {r.ok} ok, {r.failed} failed "
                  f"({r.fetched} fetched, {r.reused} from an earlier run)", file=sys.stderr, flush=True)
    return results


def _dask_client(c: CrawlParams):
    """The engine's client factory (:func:`imgpipe.engine.dask_client`): the scheduler at
    ``dask_address``, or a LocalCluster closed, with its processes, when the crawl ends."""
    from imgpipe.engine import EngineSpec, dask_client

    return dask_client(EngineSpec("dask", dask_address=c.dask_address, dask_workers=c.dask_workers,
                                  section="download.crawl"))


def _run_dask(specs: list[ShardSpec], client, bar) -> list[ShardResult]:
    from distributed import as_completed

    futures = client.map(fetch_shard, specs, pure=False)
    results, ok, failed = [], 0, 0
    for fut in as_completed(futures):
        try:
            r = fut.result()
        except Exception as exc:  # noqa: BLE001 - a worker's error, named in one line
            raise SourceError(f"crawl shard failed on a Dask worker: {type(exc).__name__}: {exc}") from None
        results.append(r)
        ok, failed = ok + r.ok, failed + r.failed
        bar.update(r.ok + r.failed)
        bar.set_postfix(ok=ok, failed=failed, refresh=False)
        if bar.disable:
            print(f"crawl: shard {r.index + 1}/{len(specs)} done on dask: {r.ok} ok, {r.failed} failed",
                  file=sys.stderr, flush=True)
    return sorted(results, key=lambda r: r.index)


def _shards(unique: list[str], size: int) -> list[list[str]]:
    return [unique[i:i + size] for i in range(0, len(unique), size)]


def run_shards(unique: list[str], cfg: DownloadParams, backoff_s: float) -> tuple[list[ShardSpec], list[ShardResult]]:
    c = cfg.crawl
    state_dir = str(Path(cfg.cache_dir).absolute() / CRAWL_DIR)
    chunks = _shards(unique, c.shard_size)
    run_id = uuid.uuid4().hex  # shares robots.txt verdicts between this run's shards; not in any output
    with _progress_bar(len(unique)) as bar:
        if c.engine == "dask":
            with _dask_client(c) as client:
                parallel = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
                settings = fetch_settings(c, backoff_s, min(parallel, len(chunks)))
                specs = [ShardSpec(i, urls, state_dir, settings, c.concurrency, run_id)
                         for i, urls in enumerate(chunks)]
                results = _run_dask(specs, client, bar)
        else:
            settings = fetch_settings(c, backoff_s)
            specs = [ShardSpec(i, urls, state_dir, settings, c.concurrency, run_id)
                         for i, urls in enumerate(chunks)]
            results = _run_local(specs, bar)
    return specs, results


def acquire_crawl(source: str, cfg: DownloadParams, tmp: Path, backoff_s: float = BACKOFF_S) -> SourceInfo:
    """Fetch every image of the URL list ``source`` into ``tmp`` (packed); return its provenance."""
    import pandas as pd

    from imgpipe.io import write_parquet

    c = cfg.crawl
    started = time.monotonic()
    label, list_result, fmt, rows = _read_list(source, cfg, backoff_s)
    if not rows.urls:
        raise SourceError(f"{label}: the URL list has no rows")
    unique = list(dict.fromkeys(rows.urls))  # "" (an empty cell) counts as one failed URL
    specs, results = run_shards([u for u in unique if u], cfg, backoff_s)

    # Assemble from the shards' state, in the list's order.
    records: dict[str, dict] = {"": {"status": "bad_url", "detail": "empty URL", "final_url": ""}}
    data_file: dict[str, tuple[Path, int]] = {}  # sha256 -> (data.bin, offset)
    for spec in specs:
        recs, data = read_shard(spec.dir)
        for url in spec.urls:
            rec = recs.get(url)
            if rec is None:
                raise SourceError(f"crawl shard {spec.dir}: no outcome for {redact(url)} (was the run interrupted?)")
            records[url] = rec
            if rec["status"] == "ok" and rec["sha256"] not in data_file:
                data_file[rec["sha256"]] = (data, rec["offset"])

    images: dict[str, tuple[str, int]] = {}  # sha256 -> (item_id, size), first-named first
    item_of_sha: dict[str, str] = {}
    table: dict[str, list] = {"row": [], "url": [], "label": [], "status": [], "detail": [], "bytes": [],
                              "sha256": [], "final_url": [], "item_id": []}
    for row, url in enumerate(rows.urls):
        rec = records[url]
        ok = rec["status"] == "ok"
        item_id = ""
        if ok:
            sha = rec["sha256"]
            item_id = item_of_sha.get(sha) or f"{ITEM_PREFIX}{sha[:32]}{rec['ext']}"
            if sha not in item_of_sha:
                item_of_sha[sha] = item_id
                images[sha] = (item_id, rec["size"])
        table["row"].append(row)
        table["url"].append(redact(url))
        table["label"].append(rows.labels[row] if rows.labels is not None else "")
        table["status"].append(rec["status"])
        table["detail"].append(rec.get("detail", ""))
        table["bytes"].append(rec.get("size", 0) if ok else 0)
        table["sha256"].append(rec.get("sha256", "") if ok else "")
        table["final_url"].append(rec.get("final_url", ""))
        table["item_id"].append(item_id)
    for col, values in rows.extras.items():
        table[col if col not in table else f"extra_{col}"] = values

    failed = Counter(s for s in (records[u]["status"] for u in unique) if s != "ok")
    n_ok = len(unique) - sum(failed.values())
    rate = n_ok / len(unique) if unique else 0.0
    frame = pd.DataFrame(table)
    frame["row"] = frame["row"].astype("int64")
    frame["bytes"] = frame["bytes"].astype("int64")
    report = Path(cfg.cache_dir).absolute() / CRAWL_DIR / "last-failures.csv"
    report.unlink(missing_ok=True)  # it describes the last failed run only, never a later good one
    if rate < c.min_success_rate:
        frame[frame["status"] != "ok"].to_csv(report, index=False)
        top = ", ".join(f"{reason} x{n}" for reason, n in failed.most_common(5))
        raise SourceError(f"{label}: fetched {n_ok} of {len(unique)} unique URLs ({rate:.1%}), below "
                          f"download.crawl.min_success_rate={c.min_success_rate:g}; top failure reasons: {top} "
                          f"(every failure: {report})")

    # Packs, in first-named order, read back from the shards' data files.
    order = list(images)
    fds: dict[Path, int] = {}

    @contextmanager
    def read(i: int):
        sha = order[i]
        data, offset = data_file[sha]
        fd = fds.get(data)
        if fd is None:
            fd = fds[data] = os.open(data, os.O_RDONLY)
        body = os.pread(fd, images[sha][1], offset)
        import hashlib

        if hashlib.sha256(body).hexdigest() != sha:
            raise SourceError(f"{data}: crawl state is corrupt at offset {offset}; delete that shard folder and rerun")
        yield body

    # The URLs of each image, so a take-down row naming a URL (annotations/exclude.csv) finds it.
    ok = frame[frame["status"] == "ok"]
    urls_of: dict[str, list[str]] = {}
    for url, item in zip(ok["url"].astype(str), ok["item_id"].astype(str), strict=True):
        urls_of.setdefault(item, []).append(url)
    token = PACK_URLS.set(urls_of)
    try:
        packed = write_packs(tmp, [images[sha] for sha in order], read)
    finally:
        PACK_URLS.reset(token)
        for fd in fds.values():
            os.close(fd)

    (tmp / CRAWL_ITEMS).parent.mkdir()
    write_parquet(frame, tmp / CRAWL_ITEMS)
    write_parquet(frame[frame["status"] != "ok"].reset_index(drop=True), tmp / CRAWL_FAILURES)
    files_dir = tmp / FILES_DIR
    files_dir.mkdir()
    label_file = None
    if rows.labels is not None:
        pairs = list(dict.fromkeys((item, lab) for item, lab in zip(table["item_id"], table["label"], strict=True)
                                   if item and lab))
        with open(files_dir / LABEL_FILE, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["file", "label"])
            writer.writerows(pairs)
        label_file = LABEL_FILE

    summary = {"urls": len(rows.urls), "unique urls": len(unique), "images": len(images), "failed urls":
               sum(failed.values()), "success rate": round(rate, 4)}
    # Nothing about how it was fetched (engine, shards, timing): the outputs depend on the list and
    # the servers only.
    extra = {"list_format": fmt, "packed": packed, "failures": dict(sorted(failed.items())), "summary": summary}
    # Provenance for the card: images per licence (when the list has a licence column) and the
    # URLs a consent rule refused.
    licences = licence_counts(frame)
    if licences is not None:
        extra["licences"] = licences
    extra["consent_refusals"] = {reason: failed.get(reason, 0) for reason in CONSENT_REASONS}
    print(f"crawl: {n_ok}/{len(unique)} URLs ok, {len(images)} distinct images; "
          f"{sum(r.fetched for r in results)} requested this run ({c.engine}, {len(specs)} shard"
          f"{'s' if len(specs) != 1 else ''}) in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    return SourceInfo(source=label, kind="crawl", layout="files", url=label, final_url=list_result.final_url,
                      size_bytes=list_result.size_bytes, sha256=list_result.sha256, label_file=label_file,
                      extra=extra)

