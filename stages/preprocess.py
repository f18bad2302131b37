"""Stage 2, preprocess: decode ``paths.raw`` once into pixel shards and a manifest in
``paths.preprocessed``; per-run counts go to ``metrics/preprocess.json``."""

from imgpipe.params.base import load
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
    with commit_outputs(paths.preprocessed, PREPROCESS_METRICS):
        summary = preprocess_images(paths.raw, paths.preprocessed, cfg)
        write_json(PREPROCESS_METRICS, metrics(summary))
    return summary


def main() -> None:
    run_stage("preprocess", preprocess)


if __name__ == "__main__":
    main()
