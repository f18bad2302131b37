"""Stage crossval: the network's K-fold out-of-sample view of the training labels (off by default).

Beside train, after augment: K models of ``train.model`` at ``crossval.width``/``crossval.epochs``,
the least self-confident of their out-of-sample predictions listed (``imgpipe.crossval``)."""

from pathlib import Path

from imgpipe.params.base import PARAMS_FILE, load
from imgpipe.params.crossval import CrossvalParams
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def crossval(params_path: Path = PARAMS_FILE) -> dict:
    from imgpipe.crossval import OUTPUTS, crossval_label_errors
    from imgpipe.io import commit_outputs
    from imgpipe.params.download import DownloadParams
    from imgpipe.params.train import TrainParams

    paths = load("paths", PathsParams, params_path)
    cfg = load("crossval", CrossvalParams, params_path)
    train_cfg = load("train", TrainParams, params_path)
    download = load("download", DownloadParams, params_path) if cfg.enabled and train_cfg.pretrained else None
    # the list, the probabilities, the sheet and the count land together, or none changes
    with commit_outputs(*OUTPUTS):
        return crossval_label_errors(paths.augmented, cfg, train_cfg, download)


def main() -> None:
    run_stage("crossval", crossval)


if __name__ == "__main__":
    main()
