"""Per-epoch metrics with DVCLive, declared in dvc.yaml by hand (``dvcyaml=False``)."""

from __future__ import annotations

from pathlib import Path


class EpochLog:
    """Logs a dict of metrics per epoch; the training loop itself writes nothing."""

    def __init__(self, live_dir: Path):
        from dvclive import Live

        self._live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)

    def __enter__(self) -> EpochLog:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def __call__(self, metrics: dict) -> None:
        for name, value in metrics.items():
            self._live.log_metric(name, value)
        self._live.next_step()
