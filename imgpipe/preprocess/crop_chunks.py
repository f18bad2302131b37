"""One preprocess chunk in crop mode: decode each image once, emit a manifest row per box."""

from __future__ import annotations

import os

import numpy as np

from imgpipe.preprocess import decode, features
from imgpipe.preprocess.chunks import META_COLUMNS, Chunk, ChunkResult, encode_stored, read_bytes
from imgpipe.preprocess.crops import CropCache, crop_item_id
from imgpipe.rawdata import PackReader


def process_crop_chunk(chunk: Chunk, cfg) -> ChunkResult:
    height, width = cfg.size
    pixels: list[np.ndarray] = []
    meta: dict[str, list] = {name: [] for name in META_COLUMNS}
    rejects: list[tuple[str, str, str]] = []
    files_dir = chunk.files_dir
    assert files_dir is not None and chunk.crops is not None
    packs = PackReader(os.path.dirname(files_dir))
    cache = CropCache(chunk.crop_cache, cfg, chunk.crop_padding)
    try:
        for item, boxes in zip(chunk.items, chunk.crops, strict=True):
            try:
                data = packs.read(item) if item.pack is not None else read_bytes(os.path.join(files_dir, item.file))
                original, cut = cache.crops(data, boxes, cfg, chunk.crop_padding, os.path.splitext(item.file)[1])
            except decode.Reject as exc:
                rejects += [(crop_item_id(item.item_id, b.box_id), item.file, str(exc)) for b in boxes]
                continue
            except OSError as exc:
                reason = f"{decode.UNREADABLE}: {exc.strerror or exc}"
                rejects += [(crop_item_id(item.item_id, b.box_id), item.file, reason) for b in boxes]
                continue
            except Exception as exc:  # noqa: BLE001 - one odd file must not stop the stage
                reason = f"{decode.CORRUPT}: unexpected {type(exc).__name__} while decoding ({decode.exception_text(exc)})"
                rejects += [(crop_item_id(item.item_id, b.box_id), item.file, reason) for b in boxes]
                continue
            for box, result in cut:
                crop_id = crop_item_id(item.item_id, box.box_id)
                if isinstance(result, decode.Reject):
                    rejects.append((crop_id, item.file, str(result)))
                    continue
                image, (left, top, right, bottom) = result
                pixels.append(image)
                meta["item_id"].append(crop_id)
                meta["source_path"].append(item.file)
                meta["source_index"].append(None)
                meta["source_split"].append(box.split or item.source_split)
                meta["orig_width"].append(right - left)  # the crop's size in original pixels
                meta["orig_height"].append(bottom - top)
                meta["orig_mode"].append(original.mode)
                meta["orig_format"].append(original.format)
                meta["orig_bytes"].append(len(data))
    finally:
        packs.close()
    stacked = np.stack(pixels) if pixels else np.empty((0, height, width, cfg.channels), dtype=np.uint8)
    encoded = encode_stored(stacked, cfg)  # preprocess.store: jpeg/png (decoded pixels hashed)
    columns: dict = dict(meta)
    if len(stacked):
        columns.update(features.compute(stacked))
    return ChunkResult(len(chunk.items), stacked, columns, rejects, encoded)
