"""Write the reviewed images where Label Studio can open them (a folder to mount as local files).

The download stage keeps images packed (``<raw>/packed/*.tar``) or inside array files (CIFAR
batches, IDX), so an ``item_id`` names no file a Label Studio server could serve. ``imgpipe
review --images DIR`` writes each task's image under ``DIR``: a file-backed image as its original
bytes at ``DIR/<item_id>``, an array image as a PNG at ``DIR/<item_id>.png``. Both keep the
``item_id`` in the path, so the corrected export's image references match back to the items
(``imgpipe.labels.match``). Mount ``DIR``'s parent as Label Studio local-files storage and pass
``--image-prefix /data/local-files/?d=<DIR relative to the storage root>/``.

The folder is replaced whole (atomically) on each run, and only if it is absent or one this
command wrote (it holds ``MARKER``): a folder a person made is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from imgpipe.errors import PipelineError

MARKER = ".imgpipe-review-images"


def image_file_name(item_id: str, array_item: bool) -> str:
    """The path under the images folder: the item id, plus ``.png`` for an array image. An id that
    would leave the folder (absolute, ``..``) is refused."""
    parts = PurePosixPath(item_id).parts
    if not parts or item_id.startswith("/") or any(p in ("..", "") for p in parts):
        raise PipelineError(f"{item_id}: an item id that is not a relative path; cannot write it out")
    return item_id + ".png" if array_item else item_id


def export_images(raw_dir: Path | str, item_ids: Sequence[str], out_dir: Path | str) -> dict[str, str]:
    """Write every listed item's image under ``out_dir``; returns item id -> POSIX path under it."""
    import numpy as np
    from PIL import Image

    from imgpipe import rawdata
    from imgpipe.io import atomic_dir

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if out_dir.exists() and not (out_dir / MARKER).is_file():
        raise PipelineError(f"{out_dir}: exists and was not written by `imgpipe review`; "
                            "choose another --images folder (nothing was overwritten)")
    info = rawdata.SourceInfo.read(raw_dir)
    wanted = set(item_ids)
    by_id = {it.item_id: it for it in rawdata.list_items(raw_dir, info) if it.item_id in wanted}
    missing = sorted(wanted - set(by_id))
    if missing:
        raise PipelineError(f"{raw_dir}: {len(missing)} reviewed images are not in the download, e.g. {missing[0]}; "
                            "run `dvc repro` first")
    array = rawdata.is_array_layout(info.layout)
    names = {item: image_file_name(item, array) for item in sorted(wanted)}
    with atomic_dir(out_dir) as tmp:
        (tmp / MARKER).write_text("written by `imgpipe review --images`; replaced on each run\n")
        if array:
            want_by_file: dict[str, list[int]] = {}
            for item in names:
                want_by_file.setdefault(by_id[item].file, []).append(int(by_id[item].index))
            for rel, _split, images, _labels in rawdata.iter_array_files(raw_dir / rawdata.FILES_DIR, info.layout):
                for index in want_by_file.get(rel, []):
                    target = tmp / names[f"{rel}#{index}"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.ascontiguousarray(images[index])).save(target, format="PNG")
        else:
            with rawdata.PackReader(raw_dir) as packs:
                for item, name in names.items():
                    it = by_id[item]
                    data = packs.read(it) if it.pack is not None else (raw_dir / rawdata.FILES_DIR / it.file).read_bytes()
                    target = tmp / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
    return names
