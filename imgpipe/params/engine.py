"""The engine knobs shared by the sections whose per-item work can run beyond this process
(``preprocess``, ``validate``): see :mod:`imgpipe.engine` and ``docs/scale.md``.

A mixin, not a section: each section lists the keys itself (``preprocess.engine``, ...), so
``dvc exp run -S preprocess.engine=dask`` reads like every other knob. The engine never changes
an output byte; switching it reruns only that stage (its outputs keep their hashes, so nothing
downstream reruns).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EngineParams(BaseModel):
    engine: Literal["local", "dask"] = "local"
    # engine dask: a scheduler's address (tcp://host:8786); empty = a LocalCluster of
    # dask_workers processes on this machine.
    dask_address: str = ""
    dask_workers: int = Field(2, ge=1)
