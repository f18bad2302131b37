"""The ``crossval`` section: K-fold out-of-sample probabilities of the configured network on the
training images, for confident learning (docs/cleaning.md, "Label errors through the network")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from imgpipe.params.base import Section


class CrossvalParams(Section):
    # Off by default: K trainings of the network cost K x epochs / train.epochs of a training run.
    # Off, the stage writes empty outputs and `"enabled": false` in a second.
    enabled: bool = False
    folds: int = Field(5, ge=2, le=50)  # each image is predicted by the fold model that never saw it
    width: int = Field(16, ge=0)  # airbench width of the fold models (0 = train.width); others ignore it
    epochs: int = Field(4, ge=1)  # epochs per fold model (train's recipe otherwise)
    include_val: bool = True  # also the val split (train + val = every image the pipeline trains or tunes on)
    max_flag_fraction: float = Field(0.03, ge=0, le=1)  # the list keeps at most this share, least self-confident first
    # Which images may be listed, least self-confident first: self_confidence = every image whose given
    # label is not the network's first choice (the list is as long as the cap; recall 0.808 of planted
    # swaps at 3 x swaps on CIFAR-10); cleanlab = only those cleanlab's filter keeps (0.737 there).
    rank_by: Literal["self_confidence", "cleanlab"] = "self_confidence"
    seed: int = Field(0, ge=0)  # the fold draw and the fold models' seeds
