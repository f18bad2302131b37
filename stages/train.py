"""Stage 6, train: the CNN on the images augment indexes (any preprocess.store); resumable; per-epoch metrics with DVCLive.

With ``train.nproc > 1`` the stage reruns itself under ``torchrun`` on this node (DDP); started by
``torchrun`` (several nodes), every rank runs this and rank 0 alone writes.
"""

import os
import subprocess
from pathlib import Path

from imgpipe.errors import PipelineError
from imgpipe.params.base import PARAMS_FILE, load
from imgpipe.params.download import DownloadParams
from imgpipe.params.paths import PathsParams
from imgpipe.params.preprocess import PreprocessParams
from imgpipe.params.train import TrainParams
from imgpipe.stage import run_stage


def train(params_path: Path = PARAMS_FILE) -> dict | None:
    """Train with ``params_path``'s settings, write the model; return the stage's summary."""
    cfg = load("train", TrainParams, params_path)
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from imgpipe.train.distributed import torchrun_argv

        status = subprocess.call(torchrun_argv(cfg.nproc, "stages.train"))
        if status:
            raise PipelineError(f"torchrun with {cfg.nproc} processes exited with status {status} "
                                "(the ranks' own lines are above)")
        return {"processes": f"{cfg.nproc} (torchrun; rank 0's summary is above)"}

    import resource

    import torch

    from imgpipe.io import atomic_file
    from imgpipe.train.trainer import train_model

    paths = load("paths", PathsParams, params_path)
    download = load("download", DownloadParams, params_path) if cfg.pretrained else None
    preprocess = load("preprocess", PreprocessParams, params_path)
    checkpoint, final = train_model(paths, cfg, download, preprocess)
    if checkpoint is None:  # a DDP rank other than 0
        return None
    with atomic_file(paths.model) as tmp:
        torch.save(checkpoint, tmp)
    resume = final.pop("_resume_checkpoint")
    if os.path.exists(resume):
        os.remove(resume)
    return {
        "model": f"{cfg.model} -> {paths.model}",
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "precision": checkpoint["precision"],
        **{k: v for k, v in final.items() if k != "epochs"},
        "epochs": final["epochs"],
    }


def main() -> None:
    run_stage("train", train)


if __name__ == "__main__":
    main()
