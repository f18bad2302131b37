"""The ``download`` section: which source to fetch and how."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from imgpipe.params.base import Section


class DownloadParams(Section):
    source: str = "digits"
    sha256: str = ""
    s3_endpoint_url: str = ""
    retries: int = Field(5, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    cache_dir: Path = Path(".cache/downloads")
    max_extract_bytes: int = Field(16 * 2**30, gt=0)
    max_members: int = Field(2_000_000, gt=0)
