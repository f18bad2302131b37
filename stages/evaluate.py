"""Stage 7, evaluate: headline scores, a per-class table, calibration, and the figures a person reads."""

from imgpipe.params.base import load
from imgpipe.params.evaluate import EvaluateParams
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe.evaluate.evaluation import evaluate_model

        paths = load("paths", PathsParams)
        return evaluate_model(paths.model, paths.augmented, load("evaluate", EvaluateParams))

    run_stage("evaluate", body)


if __name__ == "__main__":
    main()
