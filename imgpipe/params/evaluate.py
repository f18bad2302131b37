"""The ``evaluate`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from imgpipe.params.base import Section


class EvaluateParams(Section):
    batch_size: int = Field(512, ge=1)
    # Flip TTA (average each image's prediction with its mirror image's): true | false | model
    # (model = what the training recipe chose, saved in the checkpoint: on only when hflip is valid).
    tta: bool | Literal["model"] = "model"
    ece_bins: int = Field(15, ge=1, le=1000)  # equal-width confidence bins of the calibration error
    gallery_size: int = Field(16, ge=0, le=16)  # most confidently wrong test images drawn
    # DataLoader worker processes decoding a JPEG/PNG store's test images; auto as train.decode_workers
    decode_workers: int | Literal["auto"] = "auto"
