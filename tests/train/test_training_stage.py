"""The train stage as a process: kill-and-resume gives the same weights, Ctrl-C is one line and
keeps the checkpoint and the previous metrics, logs one line per epoch without a terminal, stale
checkpoints (params or data changed) are discarded, early stopping ends on the best epoch,
pretrained weights come from a URL pinned by sha256, and a 2-process torchrun visits every sample
once per epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from trainkit import write_augmented

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "download"))
from servers import LoopbackHTTPServer  # noqa: E402

TRAIN = {"model": "airbench", "width": 8, "epochs": 4, "batch_size": 16, "lr": 0.2, "threads": 1, "seed": 3}


def workspace(tmp_path: Path, **train) -> Path:
    ws = tmp_path / "ws"
    write_augmented(ws / "data" / "augmented", n_train=40, n_val=12, size=16)
    params = {"paths": {"augmented": "data/augmented", "model": "models/model.pt", "train_log": "metrics/train"},
              "train": {**TRAIN, **train}}
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    return ws


# A shell that starts a job in the background (`cmd &` without job control, as CI runners and
# `nohup` do) hands it SIGINT ignored, and Python then never raises KeyboardInterrupt. A person's
# Ctrl-C reaches a foreground process, so the Ctrl-C test puts SIGINT's Python handler back.
WITH_SIGINT = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")


def run_stage(ws: Path, env: dict | None = None, module: str = "stages.train",
              sigint: bool = False) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    argv = [sys.executable, "-c", WITH_SIGINT.format(module=module)] if sigint else [sys.executable, "-m", module]
    return subprocess.run(argv, cwd=ws, env=full_env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def weights(ws: Path) -> dict:
    return torch.load(ws / "models" / "model.pt", weights_only=True)["state_dict"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_and_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    ws_a = workspace(tmp_path / "a")
    done = run_stage(ws_a)
    assert done.returncode == 0, done.stderr
    # Without a terminal: one line per epoch, as the epochs finish.
    assert [line.split()[2] for line in done.stderr.splitlines() if line.startswith("train: epoch")] == \
        ["1/4", "2/4", "3/4", "4/4"]
    assert not list((ws_a / ".cache" / "train").glob("resume-*.pt"))  # a finished run cleans up

    ws_b = workspace(tmp_path / "b")
    killed = run_stage(ws_b, {"IMGPIPE_TRAIN_KILL_AFTER_EPOCH": "2"})
    assert killed.returncode == -signal.SIGKILL
    assert len(list((ws_b / ".cache" / "train").glob("resume-*.pt"))) == 1
    assert not (ws_b / "models" / "model.pt").exists() and not (ws_b / "metrics" / "train").exists()
    resumed = run_stage(ws_b)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "after epoch 2/4" in resumed.stderr
    assert same(weights(ws_a), weights(ws_b))
    # The DVCLive log of the resumed run equals the uninterrupted one, step for step.
    for rel in ("metrics.json", "plots/metrics/val/acc.tsv", "plots/metrics/lr_last.tsv"):
        assert (ws_a / "metrics/train" / rel).read_text() == (ws_b / "metrics/train" / rel).read_text()
    # Every curve also as a PNG (offline), the same bytes after a resume.
    for name in ("loss", "accuracy", "lr_last"):
        png = (ws_a / "metrics/train/plots/png" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and png == (ws_b / "metrics/train/plots/png" / f"{name}.png").read_bytes()


def set_params(ws: Path, section: str, **values) -> None:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params.setdefault(section, {}).update(values)
    (ws / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize("change", ["params", "data"])
def test_ctrl_c_is_one_line_and_keeps_checkpoint_and_previous_metrics(tmp_path, change):
    ws = workspace(tmp_path, epochs=3)
    previous = ws / "metrics" / "train" / "metrics.json"
    previous.parent.mkdir(parents=True)
    previous.write_text('{"previous": true}\n')
    out = run_stage(ws, {"IMGPIPE_TRAIN_KILL_AFTER_EPOCH": "1", "IMGPIPE_TRAIN_KILL_SIGNAL": "SIGINT"},
                    sigint=True)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train failed: interrupted; 1/3 epochs are saved in") and "resume" in last
    # Says truthfully what is not there (`dvc repro` would have removed the model) and how to get it back.
    assert "not in the workspace: models/model.pt" in last and "`dvc checkout models/model.pt" in last
    assert previous.read_text() == '{"previous": true}\n'
    assert len(list((ws / ".cache" / "train").glob("resume-*.pt"))) == 1
    # A params change, or new pixels from the preprocess stage (same index, one pixel moved: augment
    # keeps no copy of the images, so train reads the preprocessed shards), makes that checkpoint
    # stale: it is discarded, not resumed.
    if change == "params":
        set_params(ws, "train", lr=0.1)
    else:
        shard = ws / "data" / "preprocessed" / "shards" / "shard-00000.npy"
        x = np.load(shard)
        x[0, 0, 0, 0] ^= 1
        np.save(shard, x)
    rerun = run_stage(ws)
    assert rerun.returncode == 0, rerun.stderr
    assert "discarded the checkpoint" in rerun.stderr and "resuming" not in rerun.stderr
    why = "train params changed: lr 0.2 -> 0.1" if change == "params" else "the training data changed"
    assert why in rerun.stderr, rerun.stderr
    assert json.loads(previous.read_text())["step"] == 2
    assert not list((ws / ".cache" / "train").glob("resume-*.pt"))


def test_a_non_finite_loss_stops_training_with_one_line_and_writes_nothing(tmp_path):
    ws = workspace(tmp_path, model="lenet", epochs=2, lr=1e30, momentum=0.0, ema=False, bf16=False)
    previous = ws / "metrics" / "train" / "metrics.json"
    previous.parent.mkdir(parents=True)
    previous.write_text('{"previous": true}\n')
    out = run_stage(ws)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("train failed: train: the training loss (nan) is not finite at epoch 1, step ")
    assert "precision: fp32" in last and "no model was written" in last and "train.lr" in last
    assert not (ws / "models" / "model.pt").exists()
    assert previous.read_text() == '{"previous": true}\n'


def test_early_stopping_ends_on_the_best_epoch_and_says_so(tmp_path):
    # lr so small that the val accuracy never improves after epoch 1: patience 1 stops after epoch 2.
    ws = workspace(tmp_path, epochs=6, lr=1e-9, early_stopping_patience=1, ema=False)
    out = run_stage(ws)
    assert out.returncode == 0, out.stderr
    assert [line.split()[2] for line in out.stderr.splitlines() if line.startswith("train: epoch")] == \
        ["1/6", "2/6"]
    metrics = json.loads((ws / "metrics/train/metrics.json").read_text())
    assert metrics["step"] == 1  # two DVCLive steps were logged
    summary = out.stderr.splitlines()
    assert "  best_epoch: 1" in summary and "  epochs: 2" in summary


def _resnet18_weights(path: Path) -> dict:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    state = resnet18(num_classes=10).state_dict()
    torch.save(state, path)
    return state


def test_pretrained_weights_from_a_url_pinned_by_sha256(tmp_path):
    import hashlib

    weights_file = tmp_path / "resnet18-test.pth"
    served = _resnet18_weights(weights_file)
    body = weights_file.read_bytes()
    with LoopbackHTTPServer() as server:
        url = server.add("/weights/resnet18-test.pth", body)
        ws = workspace(tmp_path, model="resnet18", epochs=1, lr=0.01, label_smoothing=0.0, bias_lr_scale=1.0,
                       freeze_backbone=True, pretrained=url, pretrained_sha256="0" * 64)
        set_params(ws, "download", cache_dir=str(tmp_path / "dl"))
        wrong = run_stage(ws)
        assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
        assert "sha256" in wrong.stderr.strip().splitlines()[-1] and url in wrong.stderr
        assert not (ws / "models" / "model.pt").exists()
        set_params(ws, "train", pretrained_sha256=hashlib.sha256(body).hexdigest())
        done = run_stage(ws)
        assert done.returncode == 0, done.stderr
    trained = weights(ws)
    # The backbone was frozen: its convolutions are the served weights, untouched by training.
    for key in ("conv1.weight", "layer4.1.conv2.weight"):
        assert torch.equal(trained[f"1.backbone.{key}"], served[key])
    assert trained["1.backbone.fc.weight"].shape[0] == 3  # a new 3-class head


def test_two_process_torchrun_visits_every_sample_once_and_matches_one_process(tmp_path):
    # 16 images per step (8 per rank): per-rank BatchNorm statistics of 2-3 images (the 8-step
    # default on 40 images) made the 2-process model's eval-mode output noise.
    ws1 = workspace(tmp_path / "one", epochs=2, ema=False, min_steps_per_epoch=2)
    ws2 = workspace(tmp_path / "two", epochs=2, ema=False, nproc=2, min_steps_per_epoch=2)
    one = run_stage(ws1, {"IMGPIPE_TRAIN_TRACE": str(tmp_path / "trace1")})
    assert one.returncode == 0, one.stderr
    two = run_stage(ws2, {"IMGPIPE_TRAIN_TRACE": str(tmp_path / "trace2")})
    assert two.returncode == 0, two.stderr
    seen: dict[int, list[int]] = {}
    for rank in (0, 1):
        for line in (tmp_path / f"trace2.{rank}").read_text().splitlines():
            epoch, *ids = map(int, line.split())
            seen.setdefault(epoch, []).extend(ids)
    assert sorted(seen) == [0, 1]
    for epoch, ids in seen.items():
        assert sorted(ids) == list(range(40)), f"epoch {epoch}"
    # Same data, same global batch, gradients averaged over the ranks: the metrics agree within a
    # tolerance (BatchNorm sees per-rank half batches, so not bit for bit).
    m1 = json.loads((ws1 / "metrics/train/metrics.json").read_text())
    m2 = json.loads((ws2 / "metrics/train/metrics.json").read_text())
    assert abs(m1["train"]["loss"] - m2["train"]["loss"]) < 0.25
    assert abs(m1["val"]["acc"] - m2["val"]["acc"]) <= 0.34, (m1, m2)
    assert (ws2 / "models" / "model.pt").exists()
