"""Stage 6, train: a PyTorch CNN on the augmented arrays, per-epoch metrics with DVCLive."""

from imgpipe import params
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        import torch

        from imgpipe.io import atomic_file
        from imgpipe.train import train

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("train", params.TrainParams)
        checkpoint, final = train(paths.augmented, cfg, paths.train_log)
        with atomic_file(paths.model) as tmp:
            torch.save(checkpoint, tmp)
        return {
            "model": f"{cfg.model} -> {paths.model}",
            "precision": "bf16 autocast" if checkpoint["bf16"] else "fp32",
            **{k: v for k, v in final.items() if k != "epochs"},
            "epochs": final["epochs"],
        }

    run_stage("train", body)


if __name__ == "__main__":
    main()
