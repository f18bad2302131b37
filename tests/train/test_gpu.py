"""The CUDA paths (AMP bf16, fp16 + GradScaler, the CUDA RNG in the resume checkpoint). Marked
``gpu``: they run where CUDA is visible and are skipped elsewhere with the reason;
``benchmarks/gpu_check.sh`` runs them with the headline on a GPU machine."""

from __future__ import annotations

import math

import pytest
import torch

from imgpipe.inference import make_model, predict_logits
from imgpipe.params.train import TrainParams
from imgpipe.train.loop import fit

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU visible here)")]

META = {"classes": ["c0", "c1", "c2"], "height": 16, "width": 16, "channels": 3}
NORM3 = {"mean": [0.3, 0.3, 0.3], "std": [0.3, 0.3, 0.3]}


def _fit(tiny_split, **cfg):
    torch.manual_seed(0)
    model = make_model("airbench", META, NORM3, {"width": 8}).cuda()
    params = TrainParams(epochs=5, batch_size=8, min_steps_per_epoch=1, width=8, lr=0.2, ema=False, **cfg)
    state = fit(model, tiny_split(24, 16), tiny_split(12, 16, seed=1), params, flip=True,
                device=torch.device("cuda"))
    return model, state


@pytest.mark.parametrize("precision", ["auto", False])
def test_airbench_trains_on_the_gpu_with_a_finite_falling_loss(precision, tiny_split):
    model, state = _fit(tiny_split, bf16=precision)
    losses = [r["train/loss"] for r in state.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0], losses
    val = tiny_split(12, 16, seed=1)
    logits = predict_logits(model, val.x, 8, tta=True)
    assert torch.isfinite(logits).all()
    assert float((logits.argmax(1) == torch.from_numpy(val.y)).float().mean()) >= 0.6


def test_fp16_with_grad_scaler_where_the_gpu_lacks_bf16(tiny_split, monkeypatch):
    from imgpipe.torchenv import mixed_precision, precision_mode

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a pre-Ampere GPU
    assert precision_mode(torch.device("cuda")) == "fp16"
    assert mixed_precision(torch.device("cuda"))[1] == "cuda amp fp16 + GradScaler"
    _, state = _fit(tiny_split)
    losses = [r["train/loss"] for r in state.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0], losses


def test_kill_and_resume_on_the_gpu_restores_the_cuda_rng(tmp_path):
    import signal

    from test_training_stage import run_stage, same, weights, workspace

    ws_a, ws_b = workspace(tmp_path / "a"), workspace(tmp_path / "b")
    assert run_stage(ws_a).returncode == 0
    assert run_stage(ws_b, {"IMGPIPE_TRAIN_KILL_AFTER_EPOCH": "2"}).returncode == -signal.SIGKILL
    saved = torch.load(next((ws_b / ".cache" / "train").glob("resume-*.pt")), weights_only=True)
    assert saved["cuda_rng"] is not None
    resumed = run_stage(ws_b)
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr
    assert same(weights(ws_a), weights(ws_b))
