"""The format writers of ``imgpipe export``: ImageFolder, Hugging Face parquet, WebDataset.

Each writer is ``writer(project, out_dir, options) -> dict`` (a summary of what it wrote) and
writes into ``out_dir``, an empty folder that :func:`imgpipe.export.export_dataset` renames into
place when the writer returns. Every file is written in a fixed order with fixed settings (no
timestamps, owners or library versions in the bytes), so the same dataset version gives
byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

from imgpipe.export.project import HF_SPLIT_NAMES, ExportImage, ProjectOutputs


def safe_name(text: str) -> str:
    """A file or folder name from an item id or class name: no separators, no leading dot."""
    name = text.replace("/", "__").replace("\\", "__").replace("#", "_").replace(":", "_")
    return ("_" + name) if name.startswith(".") else (name or "_")


def image_file_name(image: ExportImage) -> str:
    """The exported file name of an image: its item id, flattened, with its image extension."""
    name = safe_name(image.item_id)
    return name if name.lower().endswith(image.ext) else name + image.ext


# -- imagefolder ----------------------------------------------------------------------------------


def write_imagefolder(project: ProjectOutputs, out_dir: Path, options) -> dict:
    """``<split>/<class>/<file>`` with the source's own bytes, plus ``metadata.csv`` (``file_name``,
    ``item_id``, ``source_path``, ``split``, ``label``: Hugging Face's ImageFolder metadata shape)
    and ``classes.json`` (the frozen class order; torchvision's ``ImageFolder`` sorts folder names)."""
    counts: dict[str, int] = {}
    rows = []
    for image in project.images():
        rel = f"{image.split}/{safe_name(image.label)}/{image_file_name(image)}"
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # two item ids that flatten to one name: never overwrite silently
            raise FileExistsError(f"{rel}: two images flatten to this file name")
        path.write_bytes(image.data)
        rows.append((rel, image.item_id, image.source_path, image.split, image.label))
        counts[image.split] = counts.get(image.split, 0) + 1
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file_name", "item_id", "source_path", "split", "label"])
    writer.writerows(rows)
    (out_dir / "metadata.csv").write_text(buffer.getvalue())
    _write_classes(out_dir, project.classes)
    return {"images": len(rows), "splits": counts}


def _write_classes(out_dir: Path, classes: list[str]) -> None:
    from imgpipe.io import write_json

    write_json(out_dir / "classes.json", {"classes": classes})


# -- hf (Hugging Face datasets parquet) -----------------------------------------------------------

HF_ROW_GROUP = 1000  # rows per parquet row group (datasets reads by row group)


def hf_schema(classes: list[str]):
    """The arrow schema of an exported split, with the ``datasets`` features in its metadata:
    ``image`` (Image: bytes + path), ``label`` (ClassLabel over the frozen classes), ``item_id``,
    ``source_path``."""
    import pyarrow as pa

    features = {
        "image": {"_type": "Image"},
        "label": {"_type": "ClassLabel", "names": list(classes)},
        "item_id": {"dtype": "string", "_type": "Value"},
        "source_path": {"dtype": "string", "_type": "Value"},
    }
    schema = pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("label", pa.int64()),
        ("item_id", pa.string()),
        ("source_path", pa.string()),
    ])
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True)})


def hf_file_name(split: str) -> str:
    return f"data/{HF_SPLIT_NAMES[split]}-00000-of-00001.parquet"


def write_hf(project: ProjectOutputs, out_dir: Path, options) -> dict:
    """``data/<train|validation|test>-00000-of-00001.parquet`` (the Hub's layout, which
    ``datasets.load_dataset(out_dir)`` reads as splits) plus a ``README.md`` dataset card."""
    import pyarrow.parquet as pq

    schema = hf_schema(project.classes)
    counts = {}
    (out_dir / "data").mkdir()
    for split in project.splits():
        n = 0
        with pq.ParquetWriter(out_dir / hf_file_name(split), schema, compression="zstd",
                              write_statistics=False) as writer:
            batch: list = []
            for image in project.images(split):
                batch.append(image)
                n += 1
                if len(batch) == HF_ROW_GROUP:
                    writer.write_table(_hf_rows(batch, schema), row_group_size=HF_ROW_GROUP)
                    batch = []
            if batch:
                writer.write_table(_hf_rows(batch, schema), row_group_size=HF_ROW_GROUP)
        counts[split] = n
    (out_dir / "README.md").write_text(_hf_card(project.classes, counts))
    return {"images": sum(counts.values()), "splits": counts}


def _hf_rows(images: list[ExportImage], schema):
    import pyarrow as pa

    return pa.Table.from_pydict({
        "image": [{"bytes": image.data, "path": image_file_name(image)} for image in images],
        "label": [image.label_index for image in images],
        "item_id": [image.item_id for image in images],
        "source_path": [image.source_path for image in images],
    }, schema=schema)


def _hf_card(classes: list[str], counts: dict[str, int]) -> str:
    names = "\n".join(f"          '{i}': {json.dumps(name)}" for i, name in enumerate(classes))
    splits = "\n".join(f"  - split: {HF_SPLIT_NAMES[s]}\n    path: {hf_file_name(s)}" for s in counts)
    return (
        "---\nconfigs:\n- config_name: default\n  data_files:\n" + splits + "\n"
        "dataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: label\n"
        "    dtype:\n      class_label:\n        names:\n" + names + "\n"
        "  - name: item_id\n    dtype: string\n  - name: source_path\n    dtype: string\n---\n\n"
        "Exported by `imgpipe export --format hf`: the validated dataset, one parquet file per split.\n"
    )


# -- webdataset -----------------------------------------------------------------------------------


class TarShards:
    """Deterministic tar shards ``<prefix>-NNNNNN.tar`` of at most ``size`` samples each."""

    def __init__(self, out_dir: Path, prefix: str, size: int):
        self.out_dir, self.prefix, self.size = out_dir, prefix, size
        self.index, self.samples, self.fh, self.names = -1, 0, None, []

    def add(self, members: list[tuple[str, bytes]]) -> None:
        from imgpipe.rawdata import member_header

        if self.fh is None or self.samples == self.size:
            self.close()
            self.index += 1
            name = f"{self.prefix}-{self.index:06d}.tar"
            self.names.append(name)
            self.fh = open(self.out_dir / name, "wb")  # noqa: SIM115 (closed in close())
            self.samples = 0
        for name, data in members:
            self.fh.write(member_header(name, len(data)))
            self.fh.write(data)
            self.fh.write(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
        self.samples += 1

    def close(self) -> None:
        if self.fh is not None:
            end = self.fh.tell() + 2 * tarfile.BLOCKSIZE
            self.fh.write(b"\0" * (2 * tarfile.BLOCKSIZE + (-end % tarfile.RECORDSIZE)))
            self.fh.close()
            self.fh = None


def write_webdataset(project: ProjectOutputs, out_dir: Path, options) -> dict:
    """``<split>-NNNNNN.tar`` shards of ``options.shard_size`` samples. A sample is
    ``<key>.<ext>`` (the image bytes), ``<key>.cls`` (the class index) and ``<key>.json``
    (``item_id``, ``source_path``, ``label``, ``label_index``); ``__key__`` is the split and the
    position in it (item ids hold dots and slashes, which WebDataset reads as key separators)."""
    counts, shards = {}, {}
    for split in project.splits():
        writer = TarShards(out_dir, split, options.shard_size)
        n = 0
        try:
            for n, image in enumerate(project.images(split), start=1):
                key = f"{split}-{n - 1:08d}"
                meta = json.dumps({"item_id": image.item_id, "source_path": image.source_path,
                                   "label": image.label, "label_index": image.label_index}, sort_keys=True)
                writer.add([(key + image.ext, image.data), (key + ".cls", str(image.label_index).encode()),
                            (key + ".json", meta.encode())])
        finally:
            writer.close()
        counts[split], shards[split] = n, writer.names
    _write_classes(out_dir, project.classes)
    return {"images": sum(counts.values()), "splits": counts, "shards": shards}
