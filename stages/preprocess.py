"""Stage 2, preprocess: decode ``paths.raw`` once into pixel shards and a manifest in
``paths.preprocessed``; per-run counts go to ``metrics/preprocess.json``."""

from imgpipe.params.base import load
from imgpipe.params.labels import LabelsParams
from imgpipe.params.paths import PathsParams
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.stage import run_stage


def preprocess() -> dict:
    """Decode the raw images into shards; both outputs land together. Returns the summary."""
    from imgpipe.contracts import PREPROCESS_METRICS
    from imgpipe.io import commit_outputs, write_json
    from imgpipe.preprocess.pipeline import metrics, preprocess_images

    paths = load("paths", PathsParams)
    cfg = load("preprocess", PreprocessParams)
    # labels.task detection + labels.detection.crops: one item per box (imgpipe/preprocess/crops.py)
    labels = load("labels", LabelsParams)
    crops = None
    if labels.task == "detection" and labels.detection.crops:
        from imgpipe.contracts import CROPS_FILE
        from imgpipe.preprocess.crops import crop_plan

        crops = crop_plan(paths.labels / CROPS_FILE)
    with commit_outputs(paths.preprocessed, PREPROCESS_METRICS):
        summary = preprocess_images(paths.raw, paths.preprocessed, cfg, crops=crops,
                                    crop_padding=labels.detection.crop_padding,
                                    crop_cache=labels.detection.cache_dir or None)
        write_json(PREPROCESS_METRICS, metrics(summary))
    return summary


def main() -> None:
    run_stage("preprocess", preprocess)


if __name__ == "__main__":
    main()
