"""The ``augment`` section: offline augmentation of the train split."""

from __future__ import annotations

from pydantic import Field

from imgpipe.params.base import Section


class AugmentParams(Section):
    seed: int = Field(7, ge=0)
    copies: int = Field(0, ge=0)
    hflip: bool = False
    vflip: bool = False
    rotate: bool = True
    rotate_degrees: float = Field(10.0, ge=0, le=180)
    crop: bool = True
    crop_scale_min: float = Field(0.8, gt=0, le=1)
    color: bool = True
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.02, ge=0, le=0.5)
