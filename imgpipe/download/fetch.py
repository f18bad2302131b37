"""Fetch one file from ``http(s)://``, ``s3://`` or a local path: streamed, resumed, verified.

Remote bytes are streamed to a temporary file beside the download cache while their sha256 (and
md5, when a publisher gives only that) is computed, with a tqdm bar on stderr. A dropped
connection resumes from the byte where it stopped (HTTP ``Range`` with ``If-Range``); a server
that ignores ranges is restarted from byte 0. Other failures are retried a bounded number of
times with exponential backoff. Only a file whose checksums match is renamed into the cache, so
nothing unverified is ever extracted, parsed or kept.

Cache entries live at ``<cache_dir>/<url-hash>`` with a ``<url-hash>.json`` sidecar (url, final
url, size, sha256) and are re-hashed before every use.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from imgpipe.errors import ChecksumMismatch, SourceError
from imgpipe.io import atomic_file
from imgpipe.params.download import DownloadParams

CHUNK = 1 << 20
BACKOFF_S = 1.0  # first retry delay; doubles per failure
BACKOFF_MAX_S = 30.0
MAX_RESUMES = 100  # drops that made progress; they do not count against download.retries
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FetchResult:
    url: str  # what was asked for (password redacted)
    final_url: str  # after redirects (password redacted)
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class _Fetched:
    result: FetchResult
    md5: str


# ---------------------------------------------------------------------------------------------
# Source strings


def source_kind(source: str) -> str:
    """``url`` (http/https), ``s3`` or ``path``."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return "url"
    if scheme == "s3":
        return "s3"
    if scheme in ("", "file") or len(scheme) == 1:  # a Windows drive letter is not a scheme
        return "path"
    raise SourceError(f"{redact(source)}: unsupported URL scheme {scheme!r} (use http, https, s3 or a path)")


def local_path(source: str) -> Path:
    if urlsplit(source).scheme.lower() == "file":
        return Path(unquote(urlsplit(source).path))
    return Path(source).expanduser()


def redact(url: str) -> str:
    """Hide a password in ``user:password@host`` so it never reaches logs or ``source.json``."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # a malformed URL (``http://[::1``) is still logged, its password hidden
        import re

        return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def normalize_sha256(value: str | None, what: str = "download.sha256") -> str | None:
    if not value:
        return None
    digest = value.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise SourceError(f"{what} must be 64 hex digits, got {value!r}")
    return digest


# ---------------------------------------------------------------------------------------------
# Hashing and progress


class _Digest:
    """sha256 always; md5 only where a publisher's md5 is to be checked (it costs throughput)."""

    def __init__(self, with_md5: bool = False) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if with_md5 else None
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)
        self.size += len(chunk)

    def fresh(self) -> _Digest:
        return _Digest(self.md5 is not None)

    def md5_hex(self) -> str:
        return self.md5.hexdigest() if self.md5 is not None else ""


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in logs and CI.
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=None, leave=False, mininterval=0.5)


def _check(label: str, digest: _Digest, sha256: str | None, md5: str | None) -> None:
    got_sha, got_md5 = digest.sha256.hexdigest(), digest.md5_hex()
    if sha256 and got_sha != sha256:
        raise ChecksumMismatch(f"{label}: checksum mismatch: expected sha256 {sha256}, got {got_sha}")
    if md5 and got_md5 != md5.lower():
        raise ChecksumMismatch(f"{label}: checksum mismatch: expected md5 {md5.lower()}, got {got_md5}")


def _hash_file(path: Path, desc: str, with_md5: bool = False) -> _Digest:
    digest = _Digest(with_md5)
    with open(path, "rb") as fh, _progress(path.stat().st_size, desc) as bar:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest


# ---------------------------------------------------------------------------------------------
# Error descriptions


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 -> socket), breadth first."""
    seen, todo = set(), [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
        todo += [e for e in (getattr(cur, "reason", None), cur.__cause__, cur.__context__)
                 if isinstance(e, BaseException)]


UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH: "no route to host", errno.ENETUNREACH: "network unreachable"}
# The host is there but nothing answers, or there is no way to it: a retry seconds later rarely
# helps, so such a failure gets one more attempt, not download.retries of them.
UNREACHABLE_CAUSES = ("connection refused", *UNREACHABLE_ERRNOS.values())
CONNECT_FAILURE_ATTEMPTS = 2


def describe_network_error(exc: BaseException, timeout_s: float) -> str:
    """A short cause for a failed request: 'connection refused', 'cannot resolve host x', ..."""
    import socket

    import requests
    import urllib3.exceptions as u3

    chain = list(_causes(exc))
    for cur in chain:
        if isinstance(cur, u3.NameResolutionError | socket.gaierror):
            host = getattr(getattr(cur, "conn", None), "host", None)
            return f"cannot resolve host {host!r} (DNS)" if host else "cannot resolve host (DNS)"
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, OSError) and cur.errno in UNREACHABLE_ERRNOS:
            return UNREACHABLE_ERRNOS[cur.errno]
    for cur in chain:
        # urllib3 2 makes NewConnectionError a subclass of ConnectTimeoutError, but it means the
        # connection failed outright (a real connect timeout is a plain ConnectTimeoutError).
        if isinstance(cur, u3.NewConnectionError):
            cause = next((c for c in chain if isinstance(c, OSError) and not isinstance(c, u3.HTTPError)), None)
            if not isinstance(cause, TimeoutError):
                return f"cannot connect: {getattr(cause, 'strerror', None) or cause or cur}"
        if isinstance(cur, requests.exceptions.ConnectTimeout | u3.ConnectTimeoutError):
            return f"connection timed out after {timeout_s:g}s"
        if isinstance(cur, requests.exceptions.ReadTimeout | u3.ReadTimeoutError | TimeoutError):
            return f"no data received for {timeout_s:g}s (read timeout)"
        if isinstance(cur, requests.exceptions.SSLError | u3.SSLError):
            return f"TLS error: {cur}"
        if isinstance(cur, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(cur, u3.ProtocolError | requests.exceptions.ChunkedEncodingError | _Dropped):
            return "connection dropped before the end of the file"
    return f"{type(exc).__name__}: {exc}"


class _Dropped(Exception):
    """The body ended before the advertised length."""


class _HTTPStatus(Exception):
    def __init__(self, status: int, reason: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status
        self.retry_after = retry_after


def _backoff(failures: int, backoff_s: float, retry_after: float | None = None) -> float:
    delay = min(BACKOFF_MAX_S, backoff_s * 2 ** (failures - 1))
    return min(BACKOFF_MAX_S, max(delay, retry_after or 0.0))


# ---------------------------------------------------------------------------------------------
# HTTP


def _range_start(content_range: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/200`` -> (100, 200)."""
    try:
        unit, spec = (content_range or "").split(" ", 1)
        span, total = spec.split("/", 1)
        return int(span.split("-", 1)[0]), (None if total == "*" else int(total))
    except ValueError:
        return None, None


def _retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a zone-less one is read as such
        import datetime

        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _http_download(url: str, out, cfg: DownloadParams, backoff_s: float, desc: str,
                   with_md5: bool) -> tuple[str, _Digest]:
    import requests
    import urllib3.exceptions as u3

    label = redact(url)
    session = requests.Session()
    # identity: the checksum is over the bytes as published, never a transparently decoded body.
    session.headers.update({"Accept-Encoding": "identity", "User-Agent": "imgpipe-download/1"})
    timeout = (cfg.timeout_s, cfg.timeout_s)
    digest, validator, total, final_url = _Digest(with_md5), None, None, url
    failures = resumes = 0
    with session, _progress(None, desc) as bar:
        while True:
            offset = digest.size
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            if offset and validator:
                headers["If-Range"] = validator  # a changed file restarts instead of mixing versions
            try:
                with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
                    final_url = resp.url
                    restart = resp.status_code in (200, 416) or (
                        resp.status_code == 206 and _range_start(resp.headers.get("Content-Range"))[0] != offset)
                    if offset and restart:  # the server ignored or could not serve Range: start cleanly
                        out.seek(0)
                        out.truncate()
                        digest = digest.fresh()
                        bar.reset()
                    if resp.status_code == 206 and offset and not restart:
                        total = _range_start(resp.headers.get("Content-Range"))[1] or total
                    elif resp.status_code == 206:
                        raise _HTTPStatus(206, "with an unexpected Content-Range", None)
                    elif resp.status_code == 200:
                        length = resp.headers.get("Content-Length")
                        total = int(length) if length and length.isdigit() else None
                        etag = resp.headers.get("ETag", "")
                        validator = etag if etag and not etag.startswith("W/") else resp.headers.get(
                            "Last-Modified")
                    elif resp.status_code == 416 and offset:  # the file changed or shrank
                        raise _HTTPStatus(416, "Range Not Satisfiable", None)
                    else:
                        raise _HTTPStatus(resp.status_code, resp.reason or "",
                                          _retry_after(resp.headers.get("Retry-After")))
                    bar.total = total
                    bar.refresh()
                    # read1: whatever has arrived, so a stall keeps the bytes already received.
                    while chunk := resp.raw.read1(CHUNK, decode_content=False):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                    if total is not None and digest.size < total:
                        raise _Dropped()
                    if total is not None and digest.size > total:
                        raise SourceError(f"{label}: server sent {digest.size} bytes, more than the "
                                          f"{total} it announced")
                return redact(final_url), digest
            except _HTTPStatus as exc:
                if exc.status not in RETRY_STATUSES and exc.status not in (206, 416):
                    raise SourceError(f"{label}: {exc}") from None
                cause, retry_after, progressed = str(exc), exc.retry_after, False
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema, requests.exceptions.TooManyRedirects,
                    requests.exceptions.SSLError) as exc:
                raise SourceError(f"{label}: {describe_network_error(exc, cfg.timeout_s)}") from None
            except (requests.exceptions.RequestException, u3.HTTPError, _Dropped, ConnectionError,
                    TimeoutError) as exc:
                cause, retry_after = describe_network_error(exc, cfg.timeout_s), None
                progressed = digest.size > offset
            if progressed and resumes < MAX_RESUMES:
                resumes += 1  # a flaky link that keeps moving forward may keep going
                continue
            failures += 1
            attempts = cfg.retries
            if cause in UNREACHABLE_CAUSES:
                attempts = min(attempts, CONNECT_FAILURE_ATTEMPTS)
            if failures >= attempts:
                raise SourceError(f"{label}: {cause} (gave up after {failures} attempt"
                                  f"{'s' if failures > 1 else ''})")
            delay = _backoff(failures, backoff_s, retry_after)
            print(f"download: {label}: {cause}; attempt {failures + 1} of {attempts} in {delay:.3g}s",
                  file=sys.stderr, flush=True)
            time.sleep(delay)


# ---------------------------------------------------------------------------------------------
# S3


def _s3_filesystem(cfg: DownloadParams):
    import s3fs

    endpoint = cfg.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint,
        skip_instance_cache=True,
        config_kwargs={"connect_timeout": cfg.timeout_s, "read_timeout": cfg.timeout_s,
                       "retries": {"max_attempts": 1, "mode": "standard"}},
    )
    fs.retries = 1  # our loop retries with backoff and resumes; s3fs's own loop would multiply it
    return fs


def _describe_s3_error(exc: BaseException, timeout_s: float) -> tuple[str, bool]:
    """(cause, retryable) for an s3fs/botocore failure."""
    for cur in _causes(exc):
        name = type(cur).__name__
        if isinstance(cur, FileNotFoundError):
            return "no such bucket or object", False
        if isinstance(cur, PermissionError):
            return f"access denied ({cur})", False
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return "no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", False
        if name in ("EndpointConnectionError", "ClientConnectorError", "ConnectionRefusedError"):
            return f"cannot connect to the S3 endpoint ({cur})", True
        if name in ("ReadTimeoutError", "ConnectTimeoutError", "TimeoutError", "ServerTimeoutError"):
            return f"S3 request timed out after {timeout_s:g}s", True
    return f"{type(exc).__name__}: {exc}", True


def _s3_download(url: str, out, cfg: DownloadParams, backoff_s: float, desc: str,
                 with_md5: bool) -> tuple[str, _Digest]:
    path = url[len("s3://"):]
    if "/" not in path.strip("/"):
        raise SourceError(f"{url}: expected s3://bucket/key")
    digest, failures, resumes, fs, size = _Digest(with_md5), 0, 0, None, None
    with _progress(None, desc) as bar:
        while True:
            offset = digest.size
            try:
                fs = fs or _s3_filesystem(cfg)
                if size is None:
                    info = fs.info(path)
                    if info.get("type") == "directory":
                        raise SourceError(f"{url}: is a prefix, not an object (point at an archive)")
                    size = int(info["size"])
                    bar.total = size
                    bar.refresh()
                with fs.open(path, "rb", block_size=8 * CHUNK, cache_type="readahead") as fh:
                    fh.seek(offset)
                    while chunk := fh.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                if digest.size != size:
                    raise _Dropped()
                return url, digest
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - s3fs/aiobotocore raise many unrelated types
                if isinstance(exc, _Dropped):
                    cause, retryable = "connection dropped before the end of the object", True
                else:
                    cause, retryable = _describe_s3_error(exc, cfg.timeout_s)
                if not retryable:
                    raise SourceError(f"{url}: {cause}") from None
                if digest.size > offset and resumes < MAX_RESUMES:
                    resumes += 1
                    continue
                failures += 1
                if failures >= cfg.retries:
                    raise SourceError(f"{url}: {cause} (gave up after {failures} attempts)") from None
                time.sleep(_backoff(failures, backoff_s))


# ---------------------------------------------------------------------------------------------
# The cache


def _cache_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:40]


def _read_cached(entry: Path, meta_path: Path, sha256: str | None, md5: str | None) -> _Fetched | None:
    """The cache entry if it is intact and matches what is expected; otherwise drop it."""
    try:
        meta = json.loads(meta_path.read_text())
        if not entry.is_file():
            return None
        digest = _hash_file(entry, "verify cache", with_md5=bool(md5))
    except (OSError, ValueError):
        return None
    intact = digest.sha256.hexdigest() == meta.get("sha256") and digest.size == meta.get("size_bytes")
    wanted = (not sha256 or meta["sha256"] == sha256) and (not md5 or digest.md5_hex() == md5.lower())
    if not intact:
        entry.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None
    if not wanted:  # the pinned checksum changed: fetch again
        return None
    result = FetchResult(meta["url"], meta["final_url"], meta["size_bytes"], meta["sha256"])
    return _Fetched(result, digest.md5_hex())


def _download_remote(url: str, cfg: DownloadParams, sha256: str | None, md5: str | None,
                     backoff_s: float) -> tuple[Path, _Fetched]:
    cache_dir = Path(cfg.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(url)
    entry, meta_path = cache_dir / key, cache_dir / f"{key}.json"
    cached = _read_cached(entry, meta_path, sha256, md5)
    if cached is not None:
        return entry, cached
    tmp = cache_dir / f".{key}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    desc = Path(urlsplit(url).path).name or "download"
    try:
        with open(tmp, "wb") as out:
            download = _s3_download if source_kind(url) == "s3" else _http_download
            final_url, digest = download(url, out, cfg, backoff_s, desc, bool(md5))
        _check(redact(url), digest, sha256, md5)
        result = FetchResult(redact(url), final_url, digest.size, digest.sha256.hexdigest())
        fetched = _Fetched(result, digest.md5_hex())
        os.replace(tmp, entry)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"url": result.url, "final_url": result.final_url, "size_bytes": result.size_bytes,
            "sha256": result.sha256}
    with atomic_file(meta_path) as meta_tmp:
        meta_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return entry, fetched


def _local_file(source: str) -> Path:
    path = local_path(source)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SourceError(f"{source}: no such file or directory") from None
    except OSError as exc:
        raise SourceError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{source}: not a regular file")
    return path


def fetch_verified(url: str, cfg: DownloadParams, *, sha256: str | None = None, md5: str | None = None,
                   backoff_s: float = BACKOFF_S) -> tuple[Path, FetchResult, str]:
    """A verified local copy of ``url``: ``(path, result, md5)`` (md5 is "" unless asked for).

    Remote sources land in (or are reused from) the download cache; a local file is hashed where
    it is and its own path is returned (it is read, never moved or modified).
    """
    sha256 = normalize_sha256(sha256)
    kind = source_kind(url)
    if kind == "path":
        path = _local_file(url)
        digest = _hash_file(path, path.name, with_md5=bool(md5))
        _check(url, digest, sha256, md5)
        result = FetchResult(url, url, digest.size, digest.sha256.hexdigest())
        return path, result, digest.md5_hex()
    path, fetched = _download_remote(url, cfg, sha256, md5, backoff_s)
    return path, fetched.result, fetched.md5


def copy_verified(src: Path, dest: Path, sha256: str, label: str) -> None:
    """Copy ``src`` to ``dest`` atomically, re-checking the bytes actually copied."""
    with atomic_file(dest) as tmp:
        digest = _Digest()
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
        _check(label, digest, sha256, None)


def fetch_to_file(url: str, dest: Path, cfg: DownloadParams, expected_sha256: str | None = None,
                  *, backoff_s: float = BACKOFF_S) -> FetchResult:
    """Fetch ``url`` (http(s)://, s3:// or a local path) to ``dest``, atomically and verified.

    Raises :class:`SourceError` (one line naming the source and the cause) or
    :class:`ChecksumMismatch`; ``dest`` is then left as it was.
    """
    try:
        path, result, _md5 = fetch_verified(url, cfg, sha256=expected_sha256, backoff_s=backoff_s)
        copy_verified(path, Path(dest), result.sha256, redact(url))
    except OSError as exc:  # the cache or dest cannot be written (disk full, permissions, ...)
        where = f" ({exc.filename})" if exc.filename else ""
        raise SourceError(f"{redact(url)}: {exc.strerror or exc}{where}") from None
    return result

