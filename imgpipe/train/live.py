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
        for record in history:
            self.log(record)

    def log(self, record: dict) -> None:
        for name, value in record.items():
            self.live.log_metric(name, value, plot=True)
        self.live.next_step()

    def publish(self, final_dir: Path) -> None:
        """Close the log and move it into ``final_dir`` atomically."""
        from imgpipe.io import atomic_dir

        self.live.end()
        with atomic_dir(final_dir) as tmp:
            for item in self.work_dir.iterdir():
                shutil.move(str(item), tmp / item.name)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def close(self) -> None:
        self.live.end()
