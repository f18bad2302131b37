"""Preprocess: decode every raw image once into pixel shards plus a manifest of per-image facts.

Output (``docs/DATA_CONTRACTS.md``): ``manifest.parquet``, ``rejects.parquet``,
``shards/shard-NNNNN.npy`` and ``info.json``, built in a temporary directory and renamed into
place.

Work is split into fixed-size chunks of items, in ``list_items`` order. Each chunk is decoded and
featurised by one worker and the results are consumed in chunk order, with only a bounded number
of chunks in flight, so the output bytes do not depend on the worker count and memory does not
grow with the dataset (beyond the manifest columns themselves).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from imgpipe import engine
from imgpipe.contracts import MANIFEST_FILE, PREPROCESS_INFO_FILE, REJECTS_FILE
from imgpipe.errors import PipelineError
from imgpipe.io import atomic_dir, write_json, write_parquet
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.preprocess import decode, features
from imgpipe.preprocess.chunks import META_COLUMNS, Chunk, ChunkResult, encode_stored, read_bytes
from imgpipe.preprocess.shards import EncodedShardWriter, ShardWriter
from imgpipe.rawdata import (
    FILES_DIR,
    PackReader,
    RawItem,
    SourceInfo,
    is_array_layout,
    iter_array_files,
    list_items,
)

# Items per chunk: big enough that per-chunk costs (IPC, numpy call overhead) vanish, small
# enough that a chunk's pixels stay a few MiB. It depends only on the output image size, never
# on the worker count: chunking is part of what makes the output reproducible.
CHUNK_BYTES = 4 << 20
MAX_CHUNK = 256
MIN_CHUNK = 8

INT_COLUMNS = frozenset({"orig_width", "orig_height", "orig_bytes"})
REJECT_COLUMNS = ("item_id", "source_path", "reason")
ARRAY_FORMATS = {"cifar10": "CIFAR", "cifar100": "CIFAR", "idx": "IDX"}


def manifest_columns(channels: int) -> list[str]:
    """The manifest's columns, in order, for images with ``channels`` channels."""
    return [
        *META_COLUMNS,
        "pixel_sha256",
        "phash",
        "dhash",
        *(f"mean_c{c}" for c in range(channels)),
        *(f"std_c{c}" for c in range(channels)),
        *(f"brightness_p{q:02d}" for q in features.PERCENTILES),
        "entropy",
        "blur",
        "shard",
        "shard_offset",
    ]


def chunk_size(cfg: PreprocessParams) -> int:
    height, width = cfg.size
    per_image = height * width * cfg.channels
    return int(min(MAX_CHUNK, max(MIN_CHUNK, CHUNK_BYTES // per_image)))


# --- per item -------------------------------------------------------------------------------


def decode_file(path: str, cfg: PreprocessParams) -> tuple[np.ndarray, decode.Original, int]:
    """Pixels, original facts and byte size of one image file. Raises :class:`decode.Reject`."""
    try:
        data = read_bytes(path)
    except OSError as exc:
        raise decode.Reject(decode.UNREADABLE, f"{exc.strerror or exc}") from None
    pixels, original = decode.decode_with_original(data, cfg, os.path.splitext(path)[1])
    return pixels, original, len(data)


def decode_packed(packs: PackReader, item: RawItem, cfg: PreprocessParams) -> tuple[np.ndarray, decode.Original, int]:
    """Like :func:`decode_file`, for an image stored in a pack (``rawdata.pack_images``)."""
    try:
        data = packs.read(item)
    except OSError as exc:
        raise decode.Reject(decode.UNREADABLE, f"{exc.strerror or exc}") from None
    pixels, original = decode.decode_with_original(data, cfg, os.path.splitext(item.file)[1])
    return pixels, original, len(data)


def decode_array_item(image: np.ndarray, fmt: str, cfg: PreprocessParams) -> tuple[np.ndarray, decode.Original, int]:
    """An image stored in an array file (CIFAR ``(32, 32, 3)``, IDX ``(28, 28)``)."""
    mode = "L" if image.ndim == 2 or image.shape[-1] == 1 else "RGB"
    original = decode.Original(int(image.shape[1]), int(image.shape[0]), mode, fmt)
    return decode.to_model_pixels(image, cfg), original, int(image.nbytes)


def process_chunk(chunk: Chunk, cfg: PreprocessParams) -> ChunkResult:
    """Decode and featurise one chunk; bad items become reject rows, never exceptions."""
    if chunk.crops is not None:  # labels.detection.crops: one row per box
        from imgpipe.preprocess.crop_chunks import process_crop_chunk

        return process_crop_chunk(chunk, cfg)
    height, width = cfg.size
    pixels = np.empty((len(chunk.items), height, width, cfg.channels), dtype=np.uint8)
    meta: dict[str, list] = {name: [] for name in META_COLUMNS}
    rejects: list[tuple[str, str, str]] = []
    files_dir = chunk.files_dir
    packs = PackReader(os.path.dirname(files_dir)) if files_dir is not None else None
    for position, item in enumerate(chunk.items):
        try:
            if packs is not None and item.pack is not None:
                image, original, nbytes = decode_packed(packs, item, cfg)
            elif files_dir is not None:
                image, original, nbytes = decode_file(os.path.join(files_dir, item.file), cfg)
            else:
                assert chunk.images is not None
                image, original, nbytes = decode_array_item(chunk.images[position], chunk.orig_format, cfg)
        except decode.Reject as exc:
            rejects.append((item.item_id, item.file, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop the stage
            reason = f"{decode.CORRUPT}: unexpected {type(exc).__name__} while decoding ({decode.exception_text(exc)})"
            rejects.append((item.item_id, item.file, reason))
            continue
        pixels[len(meta["item_id"])] = image
        meta["item_id"].append(item.item_id)
        meta["source_path"].append(item.file)
        meta["source_index"].append(item.index)
        meta["source_split"].append(item.source_split)
        meta["orig_width"].append(original.width)
        meta["orig_height"].append(original.height)
        meta["orig_mode"].append(original.mode)
        meta["orig_format"].append(original.format)
        meta["orig_bytes"].append(nbytes)
    if packs is not None:
        packs.close()
    pixels = pixels[: len(meta["item_id"])]
    encoded = encode_stored(pixels, cfg)
    columns: dict[str, list | np.ndarray] = dict(meta)
    if len(pixels):
        columns.update(features.compute(pixels))
    return ChunkResult(len(chunk.items), pixels, columns, rejects, encoded)


def _remote_process_chunk(chunk: Chunk, cfg: PreprocessParams) -> ChunkResult:
    """:func:`process_chunk` in a worker process (pool or Dask): module-level, so it travels by
    name. An encoded store ships only the encoded bytes back, not the pixels too (5-10x less to
    pickle, and over the network on Dask)."""
    result = process_chunk(chunk, cfg)
    if result.encoded is not None:
        result.pixels = result.pixels[:, :0, :0, :0]  # keeps len(): the image count
    return result


def chunk_name(index: int, chunk: Chunk) -> str:
    """A chunk in error messages: its first and last item."""
    return f"chunk {index} ({chunk.items[0].item_id} .. {chunk.items[-1].item_id})"


# --- chunking and scheduling -----------------------------------------------------------------


def file_chunks(files_dir: Path, items: list[RawItem], size: int, crops: dict | None = None,
                crop_padding: float = 0.0, crop_cache: str | None = None) -> Iterator[Chunk]:
    for start in range(0, len(items), size):
        part = tuple(items[start : start + size])
        plan = tuple(crops[item.item_id] for item in part) if crops is not None else None
        yield Chunk(part, files_dir=str(files_dir), crops=plan, crop_padding=crop_padding, crop_cache=crop_cache)


def array_chunks(
    files_dir: Path, layout: str, size: int, on_file: Callable[[int], None] = lambda n: None
) -> Iterator[Chunk]:
    """Chunks of an array layout, loading each array file exactly once (``list_items`` would
    load them all just to count). Item ids follow ``list_items``: ``"<file>#<index>"``."""
    fmt = ARRAY_FORMATS[layout]
    for rel, split, images, _labels in iter_array_files(files_dir, layout):  # type: ignore[arg-type]
        on_file(len(images))
        for start in range(0, len(images), size):
            part = np.ascontiguousarray(images[start : start + size])
            items = tuple(RawItem(f"{rel}#{i}", split, rel, i) for i in range(start, start + len(part)))
            yield Chunk(items, images=part, orig_format=fmt)
        # Let this file's arrays go before the next one loads: one array file in memory at a time.
        del images, _labels


def ordered_map(chunks: Iterator[Chunk], cfg: PreprocessParams, runner: engine.Runner) -> Iterator[ChunkResult]:
    """Process chunks on a started engine (:mod:`imgpipe.engine`, ``preprocess.engine``); yield
    results in input order, a bounded number of chunks in flight."""
    remote = runner.workers > 1 or runner.spec.kind == "dask"
    return runner.map(_remote_process_chunk if remote else process_chunk, chunks, cfg, describe=chunk_name)


# --- collecting the output -------------------------------------------------------------------


class ManifestBuilder:
    """Accumulates manifest and reject rows chunk by chunk; no pixels are kept."""

    def __init__(self, channels: int) -> None:
        self.names = manifest_columns(channels)
        self.parts: dict[str, list] = {name: [] for name in self.names}
        self.rejects: list[tuple[str, str, str]] = []
        self.images = 0

    def add(self, result: ChunkResult, shard: np.ndarray, offset: np.ndarray) -> None:
        if len(result.pixels):
            for name, values in result.columns.items():
                self.parts[name].append(values)
            self.parts["shard"].append(shard)
            self.parts["shard_offset"].append(offset)
            self.images += len(result.pixels)
        self.rejects.extend(result.rejects)

    def manifest(self):
        import pandas as pd

        data = {}
        for name in self.names:
            parts = self.parts[name]
            if name == "source_index":
                data[name] = pd.array([v for part in parts for v in part], dtype="Int64")
            elif parts and isinstance(parts[0], np.ndarray):
                data[name] = np.concatenate(parts)
            else:
                values = [v for part in parts for v in part]
                if name in INT_COLUMNS:
                    data[name] = np.asarray(values, dtype=np.int64)
                else:  # "str" (large_string in parquet), also when empty
                    data[name] = pd.array(values, dtype="str")
        return pd.DataFrame(data, columns=self.names)

    def rejects_frame(self):
        import pandas as pd

        rows = list(zip(*self.rejects, strict=True)) if self.rejects else [[], [], []]
        # "str" even when empty, so the parquet schema (large_string) does not depend on the data.
        return pd.DataFrame(
            {name: pd.array(list(col), dtype="str") for name, col in zip(REJECT_COLUMNS, rows, strict=True)}
        )


def reason_code(reason: str) -> str:
    return reason.split(":", 1)[0]


def rejects_by_reason(rejects: list[tuple[str, str, str]]) -> dict[str, int]:
    return dict(sorted(Counter(reason_code(r[2]) for r in rejects).items()))


# --- the stage -------------------------------------------------------------------------------


def preprocess_images(raw_dir: Path, out_dir: Path, cfg: PreprocessParams, *, progress: bool = True,
                      crops: dict | None = None, crop_padding: float = 0.0, crop_cache: str | None = None) -> dict:
    """Preprocess ``raw_dir`` (the download stage's output) into ``out_dir``; return the summary
    (counts and rejects by reason, plus the worker count used, which never affects the files).
    ``crops`` (``imgpipe.preprocess.crops.crop_plan``): cut one item per box instead, from the
    images that have boxes."""
    from tqdm import tqdm

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    info = SourceInfo.read(raw_dir)
    # Absolute: Dask workers may run elsewhere (they need these paths on a shared filesystem).
    files_dir = (raw_dir / FILES_DIR).absolute()
    crop_cache = os.path.abspath(crop_cache) if crop_cache else crop_cache
    workers = engine.resolve_workers(cfg.workers)
    size = chunk_size(cfg)
    height, width = cfg.size
    # disable=None: a bar on a terminal, none in CI logs (where it would be thousands of lines).
    bar = tqdm(total=0, unit="img", desc="preprocess", file=sys.stderr, disable=None if progress else True)

    def grow_total(n: int) -> None:
        bar.total += n
        bar.refresh()

    if is_array_layout(info.layout):
        if crops is not None:
            raise PipelineError(f"labels.detection.crops needs image files; the {info.source} source keeps its "
                                "images in array files")
        chunks = array_chunks(files_dir, info.layout, size, grow_total)
    else:
        items = list_items(raw_dir, info)
        if crops is not None:  # only images with boxes; a crop item per box
            items = [item for item in items if item.item_id in crops]
        grow_total(len(items))
        # No point forking more processes than there are chunks.
        workers = max(1, min(workers, -(-len(items) // size)))
        chunks = file_chunks(files_dir, items, size, crops, crop_padding, crop_cache)

    builder = ManifestBuilder(cfg.channels)
    try:
        with engine.start(engine.EngineSpec.of(cfg, "preprocess", workers=workers)) as runner, \
                atomic_dir(out_dir) as tmp:
            runner.require_paths([str(files_dir)], "the download stage's output")
            max_bytes = int(cfg.shard_max_mb * 2**20)
            store = cfg.resolved_store
            writer = (ShardWriter(tmp, (height, width, cfg.channels), max_bytes) if store == "pixels"
                      else EncodedShardWriter(tmp, max_bytes))
            with writer:
                for result in ordered_map(chunks, cfg, runner):
                    shard, offset = writer.add(result.pixels if store == "pixels" else result.encoded)
                    builder.add(result, shard, offset)
                    bar.update(result.items)
                shards = writer.close()
            if builder.images == 0:
                raise PipelineError(
                    f"no decodable images in {raw_dir} ({len(builder.rejects)} rejected: "
                    f"{rejects_by_reason(builder.rejects) or 'no image files'})"
                )
            write_parquet(builder.manifest(), tmp / MANIFEST_FILE)
            write_parquet(builder.rejects_frame(), tmp / REJECTS_FILE)
            counts = {
                "items": builder.images + len(builder.rejects),
                "images": builder.images,
                "rejects": len(builder.rejects),
            }
            by_reason = rejects_by_reason(builder.rejects)
            info_json = {
                "mode": cfg.mode,
                "size": list(cfg.size),
                "channels": cfg.channels,
                "resize": cfg.resize,
                "background": list(cfg.background),
                "store": store,
                "counts": counts,
                "rejects_by_reason": by_reason,
                "shards": shards,
            }
            write_json(tmp / PREPROCESS_INFO_FILE, info_json)
            workers, where = runner.workers, runner.where
    finally:
        bar.close()
    return {**counts, "rejects_by_reason": by_reason, "shards": len(shards), "store": store, "workers": workers,
            "engine": where}


def metrics(summary: dict) -> dict:
    """What ``metrics/preprocess.json`` records: counts only, nothing run-dependent."""
    return {key: summary[key] for key in ("items", "images", "rejects", "rejects_by_reason", "shards")}

