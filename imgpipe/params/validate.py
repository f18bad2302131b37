"""The ``validate`` section: quarantine limit and split fractions."""

from __future__ import annotations

from pydantic import Field

from imgpipe.params.base import Section


class ValidateParams(Section):
    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = Field(2024, ge=0)
