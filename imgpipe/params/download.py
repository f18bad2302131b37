"""The ``download`` section: which source to fetch and how."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from imgpipe.params.base import Section


class CrawlParams(BaseModel):
    """``download.crawl``, for URL-list sources: ``download.source`` ending in .csv/.tsv/.jsonl/.parquet/.txt
    (optionally .gz), or ``urls:<path or URL>``. A block inside the download section, not a section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    list_format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "txt"] = "auto"
    url_column: str = Field("url", min_length=1)
    label_column: str = "label"  # "" = the list has no labels
    extra_columns: list[str] = []
    concurrency: int = Field(16, ge=1, le=1024)  # requests in flight per shard task
    per_host_connections: int = Field(8, ge=1)
    per_host_rate: float = Field(10.0, ge=0)  # requests/s per host, shared by all workers; 0 = unlimited
    timeout_s: float = Field(10.0, gt=0)
    deadline_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=1)
    max_image_bytes: int = Field(20 * 2**20, gt=0)
    max_redirects: int = Field(5, ge=0)
    allow_private: bool = False
    user_agent: str = Field("imgpipe-crawl/1", min_length=1)  # sent on every request; robots.txt groups match its first word
    honour_opt_out: bool = True  # refuse images whose X-Robots-Tag says noai / noimageai / noml
    opt_out_list: str = ""  # a file of domains and URL prefixes never to fetch (e.g. annotations/opt-out.txt)
    min_success_rate: float = Field(0.9, ge=0, le=1)
    shard_size: int = Field(10_000, ge=1)
    engine: Literal["local", "dask"] = "local"
    dask_address: str = ""  # empty with engine dask = a LocalCluster of dask_workers processes
    dask_workers: int = Field(2, ge=1)


class DownloadParams(Section):
    source: str = "digits"
    sha256: str = ""
    s3_endpoint_url: str = ""
    retries: int = Field(5, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    cache_dir: Path = Path(".cache/downloads")
    max_extract_bytes: int = Field(16 * 2**30, gt=0)
    max_members: int = Field(2_000_000, gt=0)
    crawl: CrawlParams = CrawlParams()
