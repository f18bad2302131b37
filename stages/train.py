"""Stage 6, train: a PyTorch CNN on the augmented arrays, per-epoch metrics with DVCLive."""

from imgpipe.params.base import load
from imgpipe.params.paths import PathsParams
from imgpipe.params.train import TrainParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe.training.checkpoint import save
        from imgpipe.training.live import EpochLog
        from imgpipe.training.loop import train

        paths = load("paths", PathsParams)
        cfg = load("train", TrainParams)
        with EpochLog(paths.train_log) as log_epoch:
            checkpoint, final = train(paths.augmented, cfg, log_epoch)
        save(checkpoint, paths.model)
        return {
            "model": f"{cfg.model} -> {paths.model}",
            "precision": "bf16 autocast" if checkpoint["bf16"] else "fp32",
            **{k: v for k, v in final.items() if k != "epochs"},
            "epochs": final["epochs"],
        }

    run_stage("train", body)


if __name__ == "__main__":
    main()
