"""Consent and provenance of crawled images: robots.txt, ``X-Robots-Tag``, an opt-out list, licences.

Each refusal becomes a failure row with its own reason, never a request for the image:

- ``robots_disallowed``: the host's ``/robots.txt`` (fetched once per host per run, read with
  :mod:`urllib.robotparser` for the product token of ``download.crawl.user_agent``) disallows the
  URL. A robots.txt answered with 4xx means no rules (allow all); 5xx (and 429) means the host
  is treated as disallowing everything, as Google does. When the host cannot be reached at all
  (refused, DNS, timeout, private address) the URL gets that failure's own reason.
- ``opt_out_header``: the image's response carries ``X-Robots-Tag`` with ``noai``,
  ``noimageai`` or ``noml`` (for every agent or for ours); ``download.crawl.honour_opt_out: false``
  turns this off.
- ``opt_out_list``: the URL (or a redirect hop) matches ``download.crawl.opt_out_list``, a text
  file of domains (``example.com`` also covers its subdomains) and URL prefixes
  (``https://host/path/``), one per line, ``#`` comments.

A list's licence column (``license`` or ``licence``, carried by ``download.crawl.extra_columns``)
is counted per image by :func:`licence_counts` / :func:`crawl_licence_counts` for the card.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from imgpipe.errors import SourceError

CONSENT_REASONS = ("robots_disallowed", "opt_out_header", "opt_out_list")
LICENCE_COLUMNS = ("license", "licence")
UNKNOWN_LICENCE = "unknown"
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noml"})
ROBOTS_MAX_BYTES = 500 * 1024  # Google reads the first 500 KiB of a robots.txt
ROBOTS_PATH = "/robots.txt"


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups match: ``imgpipe-crawl/1 (+https://...)`` -> ``imgpipe-crawl``."""
    return user_agent.split("/", 1)[0].split(" ", 1)[0].strip().lower()


def opt_out_directives(header: str, user_agent: str) -> list[str]:
    """The opt-out directives of an ``X-Robots-Tag`` value that apply to us.

    ``noai, noimageai`` applies to every agent; ``otherbot: noai`` only to ``otherbot``;
    ``imgpipe-crawl: noml`` to us. Multiple headers arrive joined by ``, ``.
    """
    token, found, agent = agent_token(user_agent), [], None
    for part in header.split(","):
        part = part.strip().lower()
        if ":" in part:
            head, rest = (x.strip() for x in part.split(":", 1))
            if head not in OPT_OUT_DIRECTIVES and " " not in head and head not in ("unavailable_after",):
                agent, part = head, rest  # "agent: directive" starts that agent's list
        if part in OPT_OUT_DIRECTIVES and (agent is None or agent == token):
            found.append(part)
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# The opt-out list


def read_opt_out_list(path: str) -> tuple[str, ...]:
    """The entries of the opt-out file (normalised), or () when no file is set."""
    if not path:
        return ()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file (download.crawl.opt_out_list)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read the opt-out list (download.crawl.opt_out_list): {exc}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if "://" in entry:
            try:
                parts = urlsplit(entry)
                ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
            except ValueError:
                ok = False
            if not ok:
                raise SourceError(f"{path}:{number}: {entry!r} is neither a domain nor an http(s) URL prefix")
            entries.append(f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"
                           + (f"?{parts.query}" if parts.query else ""))
        else:
            if "/" in entry or " " in entry:
                raise SourceError(f"{path}:{number}: {entry!r} is neither a domain nor an http(s) URL prefix")
            entries.append(entry.lower().strip("."))
    return tuple(dict.fromkeys(entries))


def opted_out(url: str, entries: tuple[str, ...]) -> str | None:
    """The opt-out entry ``url`` matches, or None."""
    if not entries:
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return None
    norm = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}" + (
        f"?{parts.query}" if parts.query else "")
    for entry in entries:
        if "://" in entry:
            if norm.startswith(entry):
                return entry
        elif host == entry or host.endswith("." + entry):
            return entry
    return None


# ---------------------------------------------------------------------------------------------
# robots.txt


class RobotsRules:
    """One host's verdict: a parser, or a blanket allow/disallow with the reason for it."""

    def __init__(self, parser: RobotFileParser | None = None, *, allow_all: bool = False,
                 failure: tuple[str, str] | None = None) -> None:
        self.parser, self.allow_all, self.failure = parser, allow_all, failure

    @classmethod
    def from_text(cls, text: str) -> RobotsRules:
        parser = RobotFileParser()
        parser.parse(text.splitlines())
        # RFC 9309: the longest matching rule wins, Allow on a tie; robotparser takes the first
        # match in file order, so put each group's rules in that order.
        for entry in [*parser.entries, *([parser.default_entry] if parser.default_entry else [])]:
            entry.rulelines.sort(key=lambda rule: (-len(rule.path), not rule.allowance))
        return cls(parser)

    def refusal(self, url: str, user_agent: str) -> tuple[str, str] | None:
        """(status, detail) when ``url`` may not be fetched, else None."""
        if self.failure is not None:
            return self.failure
        if self.allow_all or self.parser is None:
            return None
        if self.parser.can_fetch(agent_token(user_agent), url):
            return None
        return "robots_disallowed", f"robots.txt disallows it for {agent_token(user_agent)}"


class RobotsCache:
    """robots.txt verdicts per origin, shared by a run's threads (and its shards in one process);
    each origin is fetched once, by the first thread that needs it, while the others wait."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: dict[str, RobotsRules] = {}
        self.loading: dict[str, threading.Lock] = {}

    def get(self, origin: str, load) -> RobotsRules:
        with self.lock:
            rules = self.rules.get(origin)
            if rules is not None:
                return rules
            gate = self.loading.setdefault(origin, threading.Lock())
        with gate:
            with self.lock:
                rules = self.rules.get(origin)
            if rules is None:
                rules = load(origin)
                with self.lock:
                    self.rules[origin] = rules
            return rules


_RUNS: dict[str, tuple[float, RobotsCache]] = {}
_RUNS_LOCK = threading.Lock()
RUN_CACHE_MAX_AGE_S = 3600.0


def robots_cache_for(run_id: str) -> RobotsCache:
    """The robots cache of one crawl run in this process (shards of a run share it; Dask workers
    each keep their own). Caches of runs older than an hour are dropped."""
    now = time.monotonic()
    with _RUNS_LOCK:
        for key in [k for k, (t, _) in _RUNS.items() if now - t > RUN_CACHE_MAX_AGE_S and k != run_id]:
            del _RUNS[key]
        entry = _RUNS.get(run_id)
        if entry is None:
            entry = _RUNS[run_id] = (now, RobotsCache())
        return entry[1]


# ---------------------------------------------------------------------------------------------
# Licences


def licence_counts(items) -> dict[str, int] | None:
    """Distinct images per licence in a ``crawl/items.parquet`` frame (an image named by several
    rows counts once, under its first row's licence; an empty cell is ``unknown``), or None when
    the list had no licence column."""
    column = next((c for c in LICENCE_COLUMNS if c in items.columns), None)
    if column is None:
        return None
    ok = items[items["status"] == "ok"].drop_duplicates("item_id")
    counts: dict[str, int] = {}
    for value in ok[column].astype(str):
        key = value.strip() or UNKNOWN_LICENCE
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def crawl_licence_counts(raw_dir: Path) -> dict[str, int] | None:
    """Images per licence of a crawled ``data/raw`` (None when it was not crawled or has no
    licence column)."""
    import pandas as pd

    from imgpipe.rawdata import CRAWL_ITEMS

    path = Path(raw_dir) / CRAWL_ITEMS
    if not path.is_file():
        return None
    return licence_counts(pd.read_parquet(path))
