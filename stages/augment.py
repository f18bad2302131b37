"""Stage 5, augment: seeded augmentation of the train split; val/test untouched; train-only norm stats."""

import json

from imgpipe import params
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe.augment import build
        from imgpipe.errors import PipelineError
        from imgpipe.io import atomic_dir, read_parquet

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("augment", params.AugmentParams)
        classes = json.loads((paths.labels / "classes.json").read_text())["classes"]
        dataset = read_parquet(paths.validated / "dataset.parquet")
        with atomic_dir(paths.augmented) as tmp:
            try:
                meta = build(dataset, paths.preprocessed, tmp, cfg, classes)
            except ValueError as exc:
                raise PipelineError(f"{paths.validated / 'dataset.parquet'}: {exc}") from None
        c = meta["counts"]
        return {
            "train": f"{c['train']} rows ({c['train_originals']} originals + {cfg.copies} augmented copies each)",
            "val": c["val"],
            "test": c["test"],
            "image": f"{meta['height']}x{meta['width']}x{meta['channels']}",
        }

    run_stage("augment", body)


if __name__ == "__main__":
    main()
