"""Per-epoch DVCLive logs, built in a work folder and published into ``paths.train_log`` on success.

The work folder lives beside the resume checkpoint. A resumed run rebuilds it from the epochs
recorded in the checkpoint (so its steps and values equal an uninterrupted run's), and an
interrupted or failed run never touches the published folder: the previous run's metrics and
plots stay as they were (under ``dvc repro`` DVC itself removes a stage's outputs before running
it; ``git checkout -- metrics/train`` and ``dvc checkout`` bring them back).
"""

from __future__ import annotations

import shutil
from pathlib import Path


class EpochLog:
    def __init__(self, work_dir: Path, history: list[dict]):
        from dvclive import Live

        self.work_dir = Path(work_dir)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.live = Live(dir=str(self.work_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        self.history: list[dict] = []
        for record in history:
            self.log(record)

    def log(self, record: dict) -> None:
        for name, value in record.items():
            self.live.log_metric(name, value, plot=True)
        self.live.next_step()
        self.history.append(dict(record))

    def publish(self, final_dir: Path) -> None:
        """Close the log and move it into ``final_dir`` atomically."""
        from imgpipe.io import atomic_dir

        self.live.end()
        with atomic_dir(final_dir) as tmp:
            for item in self.work_dir.iterdir():
                shutil.move(str(item), tmp / item.name)
            write_curve_pngs(self.history, tmp / "plots" / "png")
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def close(self) -> None:
        self.live.end()


# One PNG per curve family; DVC shows a folder of PNGs as image plots (no Vega, renders offline).
CURVES = {
    "loss": ("Loss (cross-entropy)", ["train/loss", "val/loss"]),
    "accuracy": ("Accuracy", ["train/acc", "val/acc"]),
    "lr_last": ("Learning rate at the end of each epoch", ["lr_last"]),
}


def write_curve_pngs(history: list[dict], out_dir: Path) -> list[Path]:
    """``loss.png``, ``accuracy.png``, ``lr_last.png`` against the epoch (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = list(range(1, len(history) + 1))
    written = []
    for name, (title, keys) in CURVES.items():
        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        for key in keys:
            values = [r.get(key, float("nan")) for r in history]
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, metadata={"Software": None})  # no version string: same bytes for same curves
        plt.close(fig)
        written.append(path)
    return written
