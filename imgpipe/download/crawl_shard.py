"""One shard of a URL list: fetched with bounded concurrency into resumable on-disk state.

A shard's state lives in ``<state>/shards/<key>/`` (``key``: a hash of the shard's URLs), under
the download cache, outside DVC's outputs:

- ``data.bin``: the bytes of each distinct image the shard fetched, appended;
- ``log.jsonl``: one JSON line per finished URL (status, reason, final URL, sha256, size, and
  for an image its offset in ``data.bin``), written after the bytes.

A killed run loses at most the requests in flight: on the next run the log is read back, every
image record is checked against ``data.bin`` (offset, size, sha256), a torn tail is cut, and only
URLs without a lasting outcome are fetched again. Transient failures (timeouts, resets,
408/429/5xx) are retried by a later run; lasting ones (404, not an image, too large, redirect
loop, refused connection, unreachable host, refused address, ...) are kept; consent refusals
(robots.txt, the opt-out list) are judged again on every run.

:func:`fetch_shard` is the unit the engines run: in this process (``engine: local``) or on Dask
distributed workers that see the same cache folder (``engine: dask``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from imgpipe.download.crawl_consent import opted_out, robots_cache_for
from imgpipe.download.crawl_fetch import Fetcher, FetchSettings, Outcome

TRANSIENT = frozenset({"timeout", "reset", "truncated", "dns", "tls", "error"})
# Consent verdicts cost no image request, so every run judges them afresh (a robots.txt or the
# opt-out list may have changed); ``refused`` and ``unreachable`` hosts are lasting, like a 404.
RECHECKED = frozenset({"robots_disallowed", "opt_out_list"})
LOG, DATA = "log.jsonl", "data.bin"


def is_lasting(status: str) -> bool:
    if status == "ok":
        return True
    if status in TRANSIENT or status in RECHECKED:
        return False
    if status.startswith("http_"):
        code = int(status[5:])
        return not (code >= 500 or code in (408, 425, 429))
    return True


def policy_of(settings: FetchSettings) -> str:
    """The settings an outcome depends on (a 404 stays a 404 whatever the timeout)."""
    return f"max_bytes={settings.max_bytes},max_redirects={settings.max_redirects}," \
           f"allow_private={settings.allow_private},honour_opt_out={settings.honour_opt_out}"


def reusable(rec: dict, settings: FetchSettings) -> bool:
    """Whether an earlier run's outcome stands: lasting, and (for a failure) reached under the same
    limits; an image fetched while private addresses were allowed is fetched again once they are not."""
    if not is_lasting(rec["status"]):
        return False
    if settings.opt_out and any(opted_out(u, settings.opt_out) for u in (rec["url"], rec.get("final_url") or "")):
        return False  # on the opt-out list now (itself or where it led): judged, and refused, again
    if rec["status"] == "ok":
        policy = rec.get("policy", "")
        if settings.honour_opt_out and "honour_opt_out=False" in policy:
            return False  # fetched without looking at X-Robots-Tag
        return settings.allow_private or "allow_private=True" not in policy
    return rec.get("policy") == policy_of(settings)


def shard_key(urls: list[str]) -> str:
    digest = hashlib.sha256()
    for url in urls:
        digest.update(url.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class ShardSpec:
    index: int
    urls: list[str]
    state_dir: str  # <cache>/crawl
    settings: FetchSettings
    concurrency: int
    run_id: str = ""  # shards of one run in one process share its robots.txt verdicts

    @property
    def key(self) -> str:
        return shard_key(self.urls)

    @property
    def dir(self) -> Path:
        return Path(self.state_dir) / "shards" / self.key


@dataclass(frozen=True)
class ShardResult:
    index: int
    key: str
    fetched: int  # URLs requested by this run
    reused: int  # URLs whose outcome came from an earlier run
    ok: int
    failed: int


class ShardState:
    """The append-only log and data file of one shard (thread-safe appends)."""

    def __init__(self, folder: Path, verify: bool = True) -> None:
        import fcntl

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        # One process per shard at a time (two experiments sharing a cache): the second waits, then
        # resumes from what the first left.
        self.lock_fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        self.lock = threading.Lock()
        self.records: dict[str, dict] = {}
        self.by_sha: dict[str, dict] = {}
        self.verify = verify
        self._load()
        self.log_fd = os.open(folder / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.data_fd = os.open(folder / DATA, os.O_RDWR | os.O_CREAT, 0o644)

    def _load(self) -> None:
        log_path, data_path = self.folder / LOG, self.folder / DATA
        records: dict[str, dict] = {}
        lines = 0
        if log_path.exists():
            with open(log_path, "rb") as fh:
                for line in fh:
                    lines += 1
                    try:
                        rec = json.loads(line)
                        records[rec["url"]] = rec
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line
        end = 0
        data = open(data_path, "rb") if data_path.exists() else None  # noqa: SIM115
        try:
            for url, rec in list(records.items()):
                if rec.get("status") != "ok":
                    continue
                sha = rec["sha256"]
                if sha in self.by_sha:
                    continue
                ok = False
                if data is not None and self.verify:
                    data.seek(rec["offset"])
                    body = data.read(rec["size"])
                    ok = len(body) == rec["size"] and hashlib.sha256(body).hexdigest() == sha
                elif data is not None:  # sizes only: the caller checks each image's sha256 as it reads it
                    ok = rec["offset"] + rec["size"] <= os.fstat(data.fileno()).st_size
                if ok:
                    self.by_sha[sha] = rec
                    end = max(end, rec["offset"] + rec["size"])
                else:
                    del records[url]
            for url, rec in list(records.items()):  # images whose bytes were lost are fetched again
                if rec.get("status") == "ok" and rec["sha256"] not in self.by_sha:
                    del records[url]
        finally:
            if data is not None:
                data.close()
        if self.verify and data_path.exists() and data_path.stat().st_size != end:
            os.truncate(data_path, end)  # bytes after the last logged image: a write cut short
        self.records = records
        self.end = end
        if self.verify and lines != len(records):
            # Torn, dropped or superseded lines: rewrite the log as the records that stand, so the
            # next append starts on a fresh line and a reader never meets an outdated one.
            tmp = log_path.with_name(LOG + ".tmp")
            with open(tmp, "wb") as fh:
                for rec in records.values():
                    fh.write(_line(rec))
            os.replace(tmp, log_path)

    def add(self, url: str, outcome: Outcome, policy: str = "") -> dict:
        rec = {"url": url, "status": outcome.status, "detail": outcome.detail, "final_url": outcome.final_url,
               "policy": policy}
        with self.lock:
            if outcome.ok:
                rec.update(size=outcome.size, sha256=outcome.sha256, ext=outcome.ext)
                known = self.by_sha.get(outcome.sha256)
                if known is None:
                    os.pwrite(self.data_fd, outcome.body, self.end)
                    rec["offset"] = self.end
                    self.end += outcome.size
                    self.by_sha[outcome.sha256] = rec
                else:
                    rec["offset"] = known["offset"]
            os.write(self.log_fd, _line(rec))
            self.records[url] = rec
        return rec

    def close(self) -> None:
        os.close(self.log_fd)
        os.close(self.data_fd)
        os.close(self.lock_fd)  # releases the flock


def _line(rec: dict) -> bytes:
    return json.dumps(rec, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


def fetch_shard(spec: ShardSpec, progress: Callable[[dict], None] | None = None) -> ShardResult:
    """Fetch what the shard still misses; its state on disk holds every outcome afterwards."""
    state = ShardState(spec.dir)
    try:
        todo, seen = [], set()
        for url in spec.urls:
            rec = state.records.get(url)
            if url in seen:
                continue
            seen.add(url)
            if rec is not None and reusable(rec, spec.settings):
                continue
            todo.append(url)
        reused = len(seen) - len(todo)
        if progress is not None and reused:
            pending_urls = set(todo)
            for url in seen:
                if url not in pending_urls:
                    progress(state.records[url])
        fetcher = Fetcher(spec.settings, spec.concurrency, robots_cache_for(spec.run_id))
        workers = max(1, min(spec.concurrency, len(todo)))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crawl") as pool:
                pending: set = set()
                queue = iter(todo)
                # Keep at most 2x workers in flight so a million-URL shard does not make a million futures.
                for url in queue:
                    pending.add(pool.submit(_one, fetcher, state, url))
                    if len(pending) >= 2 * workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            rec = fut.result()
                            if progress is not None:
                                progress(rec)
                for fut in pending:
                    rec = fut.result()
                    if progress is not None:
                        progress(rec)
        finally:
            fetcher.close()
        ok = sum(1 for url in seen if state.records[url]["status"] == "ok")
        return ShardResult(spec.index, spec.key, len(todo), reused, ok, len(seen) - ok)
    finally:
        state.close()


def _one(fetcher: Fetcher, state: ShardState, url: str) -> dict:
    return state.add(url, fetcher.fetch(url), policy_of(fetcher.settings))  # fetch never raises


def read_shard(spec_dir: Path) -> tuple[dict[str, dict], Path]:
    """The final records of a finished shard and its data file (for assembling the outputs)."""
    state = ShardState(spec_dir, verify=False)
    state.close()
    return state.records, spec_dir / DATA
