"""The ``preprocess`` section: decoding, resizing and sharding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from imgpipe.params.base import Byte, Section


class PreprocessParams(Section):
    mode: Literal["L", "RGB"] = "RGB"
    size: tuple[Annotated[int, Field(ge=1, le=8192)], Annotated[int, Field(ge=1, le=8192)]] = (32, 32)
    resize: Literal["stretch", "center_crop", "letterbox"] = "stretch"
    background: tuple[Byte, Byte, Byte] = (255, 255, 255)
    max_pixels: int = Field(89_478_485, gt=0)
    shard_max_mb: float = Field(256.0, gt=0)
    workers: int = Field(0, ge=0)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3
