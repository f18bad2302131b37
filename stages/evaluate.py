"""Stage 7, evaluate: headline scores, a per-class table, calibration, and the figures a person reads."""

from pathlib import Path

from imgpipe.params.base import PARAMS_FILE, load
from imgpipe.params.evaluate import EvaluateParams
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def evaluate(params_path: Path = PARAMS_FILE) -> dict:
    """Score the trained model on the test split; return the stage's summary."""
    from imgpipe import contracts as c
    from imgpipe.evaluate.evaluation import evaluate_model
    from imgpipe.io import commit_outputs

    paths = load("paths", PathsParams, params_path)
    cfg = load("evaluate", EvaluateParams, params_path)
    # The headline, its tables and its figures land together, from the same run, or none changes.
    with commit_outputs(c.EVAL_METRICS, c.PER_CLASS_METRICS, c.PREDICTIONS_FILE, c.RELIABILITY_FILE,
                        c.LABEL_ERRORS_FILE, c.PER_CLASS_REPORT, c.PER_CLASS_REPORT_MD, c.EVAL_PLOTS_DIR):
        return evaluate_model(paths.model, paths.augmented, cfg, paths.preprocessed, card_dir=paths.card)


def main() -> None:
    run_stage("evaluate", evaluate)


if __name__ == "__main__":
    main()
