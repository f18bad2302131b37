"""Stage 7, evaluate: headline scores, a per-class table, calibration, and the figures a person reads."""

from pathlib import Path

from imgpipe.params.base import PARAMS_FILE, load
from imgpipe.params.evaluate import EvaluateParams
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def evaluate(params_path: Path = PARAMS_FILE) -> dict:
    """Score the trained model on the test split; return the stage's summary."""
    from imgpipe.evaluate.evaluation import evaluate_model

    paths = load("paths", PathsParams, params_path)
    return evaluate_model(paths.model, paths.augmented, load("evaluate", EvaluateParams, params_path))


def main() -> None:
    run_stage("evaluate", evaluate)


if __name__ == "__main__":
    main()
