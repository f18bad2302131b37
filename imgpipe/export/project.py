"""What an export reads: the validated dataset of a reproduced project, and each image's bytes.

``ProjectOutputs`` is the one object every format writer gets. It reads the stage outputs through
the contracts (``dataset.parquet``, ``classes.json``, ``source.json``, the raw packs and the
preprocessed shards), so a writer never touches a path itself.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from imgpipe import contracts as c
from imgpipe.errors import PipelineError
from imgpipe.params.paths import PathsParams

# imgpipe split -> the name Hugging Face `datasets` gives it
HF_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class ExportImage:
    """One exported image: its dataset row fields and encoded bytes."""

    item_id: str
    source_path: str
    split: str
    label: str
    label_index: int
    data: bytes
    ext: str  # ".png", ".jpg", ... (with the dot, lower case)


@dataclass
class ProjectOutputs:
    """The outputs of a reproduced project, rooted at ``root``, with paths from ``params.yaml``."""

    root: Path
    paths: PathsParams = field(default_factory=PathsParams)

    def path(self, rel: Path | str) -> Path:
        rel = Path(rel)
        return rel if rel.is_absolute() else self.root / rel

    @cached_property
    def dataset(self):
        """``dataset.parquet`` in a fixed order: split (train, val, test), then ``item_id``."""
        import pandas as pd

        df = c.read_table(self.path(self.paths.validated) / c.DATASET_FILE, "validate")
        if df.empty:
            raise PipelineError(f"{self.path(self.paths.validated) / c.DATASET_FILE}: the dataset is empty")
        order = pd.Categorical(df[c.SPLIT], categories=list(c.SPLITS), ordered=True)
        df = df.assign(_split_order=order).sort_values(["_split_order", c.ITEM_ID], kind="stable")
        return df.drop(columns="_split_order").reset_index(drop=True)

    @cached_property
    def classes(self) -> list[str]:
        return c.read_classes(self.path(self.paths.labels))

    @cached_property
    def source(self):
        from imgpipe.rawdata import SourceInfo

        return SourceInfo.read(self.path(self.paths.raw))

    @property
    def has_files(self) -> bool:
        """Whether the source delivered image files (exported as they are) rather than arrays."""
        return self.source.layout == "files"

    def splits(self) -> list[str]:
        present = set(self.dataset[c.SPLIT])
        return [s for s in c.SPLITS if s in present]

    def images(self, split: str | None = None) -> Iterator[ExportImage]:
        """Every image of ``split`` (or all), in :attr:`dataset` order: the source's own file
        bytes where it had files; PNG-encoded preprocessed pixels for array sources (CIFAR, IDX)."""
        df = self.dataset if split is None else self.dataset[self.dataset[c.SPLIT] == split]
        if df.empty:
            return
        rows = zip(df[c.ITEM_ID], df[c.SOURCE_PATH], df[c.SPLIT], df[c.LABEL].astype(str),
                   df[c.LABEL_INDEX].astype("int64"), strict=True)
        if self.has_files:
            yield from self._file_images(rows)
        else:
            yield from self._array_images(rows, df)

    @cached_property
    def _raw_items(self) -> dict:
        from imgpipe.rawdata import list_items

        return {item.item_id: item for item in list_items(self.path(self.paths.raw), self.source)}

    def _file_images(self, rows) -> Iterator[ExportImage]:
        from imgpipe.rawdata import PackReader

        raw = self.path(self.paths.raw)
        by_id = self._raw_items
        with PackReader(raw) as packs:
            for item_id, source_path, split, label, index in rows:
                item = by_id.get(item_id)
                if item is None:
                    raise PipelineError(f"{raw}: image {item_id!r} of the dataset is missing from the "
                                        "download stage's output; run `dvc pull` or `dvc repro`")
                try:
                    data = packs.read(item) if item.pack is not None else (raw / c.FILES_DIR / item.file).read_bytes()
                except OSError as exc:
                    raise PipelineError(f"{raw}: cannot read image {item_id!r}: {exc}") from None
                ext = os.path.splitext(item_id)[1].lower() or ".bin"
                yield ExportImage(item_id, source_path, split, label, int(index), data, ext)

    def _array_images(self, rows, df) -> Iterator[ExportImage]:
        from imgpipe.preprocess.shards import gather

        pre = self.path(self.paths.preprocessed)
        shard, offset = df[c.SHARD].to_numpy(), df[c.SHARD_OFFSET].to_numpy()
        chunk = 4096  # bounded memory whatever the dataset size
        rows = list(rows)
        for start in range(0, len(rows), chunk):
            pixels = gather(pre, shard[start:start + chunk], offset[start:start + chunk])
            for (item_id, source_path, split, label, index), image in zip(
                    rows[start:start + chunk], pixels, strict=True):
                yield ExportImage(item_id, source_path, split, label, int(index), encode_png(image), ".png")


def encode_png(pixels) -> bytes:
    """A uint8 ``(H, W, C)`` image as PNG; fixed settings, so the same pixels give the same bytes."""
    from PIL import Image

    array = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()
