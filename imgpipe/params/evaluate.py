"""The ``evaluate`` section."""

from __future__ import annotations

from pydantic import Field

from imgpipe.params.base import Section


class EvaluateParams(Section):
    batch_size: int = Field(512, ge=1)
