"""Stage 2, preprocess: decode ``paths.raw`` once into pixel shards and a manifest in
``paths.preprocessed``; per-run counts go to ``metrics/preprocess.json``."""

from pathlib import Path

from imgpipe import params
from imgpipe.stage import run_stage

METRICS_FILE = Path("metrics/preprocess.json")


def main() -> None:
    def body() -> dict:
        from imgpipe.io import write_json
        from imgpipe.preprocess import metrics, run

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("preprocess", params.PreprocessParams)
        summary = run(paths.raw, paths.preprocessed, cfg)
        write_json(METRICS_FILE, metrics(summary))
        return summary

    run_stage("preprocess", body)


if __name__ == "__main__":
    main()
