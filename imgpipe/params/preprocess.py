"""The ``preprocess`` section: decoding, resizing and sharding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from imgpipe.params.base import Byte, EngineParams, Section

# Images of up to 64x64 stay raw pixels under store: auto: there a pixel shard is at most about
# 3x a JPEG one, and reading raw pixels costs nothing; above it encoded shards win on disk by 5-10x.
ENCODE_ABOVE_PIXELS = 64 * 64


MODEL_INPUT_KEYS = ("mode", "size", "resize", "background", "store", "jpeg_quality", "fast_jpeg_decode")


class PreprocessParams(Section, EngineParams):  # + engine, dask_address, dask_workers (docs/scale.md)
    mode: Literal["L", "RGB"] = "RGB"
    size: tuple[Annotated[int, Field(ge=1, le=8192)], Annotated[int, Field(ge=1, le=8192)]] = (32, 32)
    resize: Literal["stretch", "center_crop", "letterbox"] = "stretch"
    background: tuple[Byte, Byte, Byte] = (255, 255, 255)
    max_pixels: int = Field(89_478_485, gt=0)
    shard_max_mb: float = Field(256.0, gt=0)
    workers: int = Field(0, ge=0)
    # Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling, still at least the
    # target size) before the resize: several times faster; pixels differ slightly from a full decode.
    fast_jpeg_decode: bool = True
    # How the images are kept (imgpipe.preprocess.shards): raw pixels, or encoded in shard files.
    # auto: pixels up to ENCODE_ABOVE_PIXELS per image, JPEG above (measured: docs/benchmarks.md).
    store: Literal["auto", "pixels", "jpeg", "png"] = "auto"
    jpeg_quality: int = Field(90, ge=1, le=100)

    @property
    def resolved_store(self) -> str:
        if self.store != "auto":
            return self.store
        return "pixels" if self.size[0] * self.size[1] <= ENCODE_ABOVE_PIXELS else "jpeg"

    def model_input_record(self) -> dict:
        """What made a model's input pixels (the checkpoint's ``preprocess``; predict decodes with
        it): ``store`` as ``auto`` resolved, so a record and a params file compare like with like.
        store, jpeg_quality: a jpeg store trains on JPEG-decoded pixels, so predict round-trips the
        same way; fast_jpeg_decode: how JPEG originals were decoded (draft mode)."""
        dump = self.model_dump(mode="json")
        return {**{k: dump[k] for k in MODEL_INPUT_KEYS}, "store": self.resolved_store}

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3
