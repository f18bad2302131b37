"""Stage 5, augment: per-split indexes into the preprocessed shards (no second copy of the images),
train-only norm stats, and seeded offline copies of the train split stored like the originals."""

from imgpipe.params.augment import AugmentParams
from imgpipe.params.base import load
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe import contracts as c
        from imgpipe.augment import build, resolve_hflip
        from imgpipe.errors import PipelineError
        from imgpipe.io import atomic_dir
        from imgpipe.params.download import DownloadParams
        from imgpipe.params.preprocess import PreprocessParams

        paths = load("paths", PathsParams)
        cfg = resolve_hflip(load("augment", AugmentParams), load("download", DownloadParams).source)
        pre = load("preprocess", PreprocessParams)  # offline copies are stored like the originals
        classes = c.read_classes(paths.labels)
        dataset_path = paths.validated / c.DATASET_FILE
        dataset = c.read_table(dataset_path, "validate")
        with atomic_dir(paths.augmented) as tmp:
            try:
                meta = build(dataset, paths.preprocessed, tmp, cfg, classes, pre.jpeg_quality, pre.shard_max_mb)
            except ValueError as exc:
                raise PipelineError(f"{dataset_path}: {exc}") from None
        counts = meta["counts"]
        return {
            "train": f"{counts['train']} rows ({counts['train_originals']} originals + {cfg.copies} augmented copies each)",
            "val": counts["val"],
            "test": counts["test"],
            "image": f"{meta['height']}x{meta['width']}x{meta['channels']}",
            "mirror flips": "on" if cfg.hflip else "off",
            "pixels": f"indexed in {paths.preprocessed} ({meta['store']}), not copied"
                      + (f"; offline copies in {paths.augmented}/shards" if cfg.copies else ""),
        }

    run_stage("augment", body)


if __name__ == "__main__":
    main()
