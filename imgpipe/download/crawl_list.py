"""Read a URL list (CSV, TSV, JSON Lines or parquet) into rows of url, label and extra columns.

Column names come from params. Every value is read as text (a numeric label ``3`` stays ``"3"``;
a missing value is ``""``) so nothing depends on a reader's type guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from imgpipe.errors import SourceError

LIST_FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")
URLS_PREFIX = "urls:"
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


@dataclass(frozen=True)
class UrlList:
    urls: list[str]
    labels: list[str] | None  # None: the list has no label column
    extras: dict[str, list[str]]  # extra column -> values, carried into the per-item table


def _name_suffixes(source: str) -> list[str]:
    path = urlsplit(source).path if "://" in source else source
    return [s.lower() for s in PurePosixPath(path).suffixes]


def list_format(source: str) -> tuple[str | None, str | None]:
    """(format, compression) told from the name: ``x.csv`` -> (csv, None), ``x.tsv.gz`` -> (tsv, gzip)."""
    suffixes = _name_suffixes(source)
    compression = None
    if suffixes and suffixes[-1] in _COMPRESSION:
        compression = _COMPRESSION[suffixes.pop()]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    return fmt, compression


def is_url_list(source: str) -> bool:
    """A source names a URL list when it carries the ``urls:`` prefix or ends in a list suffix."""
    return source.startswith(URLS_PREFIX) or list_format(source)[0] is not None


def read_url_list(path: Path, name: str, fmt: str, compression: str | None, url_column: str,
                  label_column: str, extra_columns: list[str]) -> UrlList:
    import pandas as pd

    if fmt == "txt":  # one URL per line, no header, no labels
        if extra_columns:
            raise SourceError(f"{name}: a .txt URL list has no columns; clear download.crawl.extra_columns")
        import bz2
        import gzip
        import lzma

        opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression or "", open)
        try:
            with opener(path, "rb") as fh:
                lines = fh.read().decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError, EOFError, lzma.LZMAError) as exc:
            raise SourceError(f"{name}: cannot read as a txt URL list: {exc}") from None
        return UrlList(urls=[line.strip() for line in lines if line.strip()], labels=None, extras={})
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False,
                                na_filter=False, compression=compression, encoding="utf-8")
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, compression=compression, encoding="utf-8")
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            raise SourceError(f"{name}: unknown list format {fmt!r} (expected one of {', '.join(LIST_FORMATS)})")
    except SourceError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{name}: cannot read as a {fmt} URL list: {first}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for a corrupt parquet
        raise SourceError(f"{name}: cannot read as a {fmt} URL list: {type(exc).__name__}: {exc}") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns

    def need(col: str, key: str, hint: str = "") -> None:
        if col not in columns:
            # Escaped where not printable: a column name with a line break must not break the line.
            shown = ", ".join(c if c and c.isprintable() else repr(c) for c in columns[:12]) + (
                " ..." if len(columns) > 12 else "")
            raise SourceError(f"{name}: no column {col!r} ({key}); the list has: {shown or 'no columns'}{hint}")

    need(url_column, "download.crawl.url_column")
    if label_column:
        need(label_column, "download.crawl.label_column", "; set it to '' for a list without labels")
    for col in extra_columns:
        need(col, "download.crawl.extra_columns")

    def text(col: str) -> list[str]:
        values = frame[col].tolist()
        return ["" if v is None or (isinstance(v, float) and v != v) else str(v).strip() for v in values]

    return UrlList(
        urls=text(url_column),
        labels=text(label_column) if label_column else None,
        extras={col: text(col) for col in extra_columns},
    )
