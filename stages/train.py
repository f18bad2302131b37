"""Stage 6, train: the CNN on the augmented arrays; resumable; per-epoch metrics with DVCLive.

With ``train.nproc > 1`` the stage reruns itself under ``torchrun`` on this node (DDP); started by
``torchrun`` (several nodes), every rank runs this and rank 0 alone writes.
"""

import os
import subprocess
import sys

from imgpipe.params.base import load
from imgpipe.params.download import DownloadParams
from imgpipe.params.paths import PathsParams
from imgpipe.params.train import TrainParams
from imgpipe.stage import run_stage


def main() -> None:
    cfg = load_cfg()
    if cfg is not None and cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from imgpipe.train.distributed import torchrun_argv

        sys.exit(subprocess.call(torchrun_argv(cfg.nproc, "stages.train")))

    def body() -> dict:
        import torch

        from imgpipe.io import atomic_file
        from imgpipe.train.trainer import train_model

        paths = load("paths", PathsParams)
        cfg = load("train", TrainParams)
        checkpoint, final = train_model(paths, cfg, load("download", DownloadParams) if cfg.pretrained else None)
        if checkpoint is None:  # a DDP rank other than 0
            return None
        with atomic_file(paths.model) as tmp:
            torch.save(checkpoint, tmp)
        resume = final.pop("_resume_checkpoint")
        os.remove(resume) if os.path.exists(resume) else None
        import resource

        return {
            "model": f"{cfg.model} -> {paths.model}",
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "precision": checkpoint["precision"],
            **{k: v for k, v in final.items() if k != "epochs"},
            "epochs": final["epochs"],
        }

    run_stage("train", body)


def load_cfg():
    try:
        return load("train", TrainParams)
    except Exception:  # reported by run_stage with its one line
        return None


if __name__ == "__main__":
    main()
