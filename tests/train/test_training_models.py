"""Each model trains a few steps on tiny generated data and its loss falls; one-step runs work."""

import math
import os

import numpy as np
import pytest
import torch

from imgpipe.errors import PipelineError
from imgpipe.inference import load_checkpoint, make_model, predict_logits
from imgpipe.models import LeNet, ResNet, build_model
from imgpipe.models.airbench import AirNet
from imgpipe.params.train import TrainParams
from imgpipe.train.checkpoint import load_weights_file, model_checkpoint
from imgpipe.train.loop import effective_batch, fit, make_optimizer


def _meta(size, channels=3, classes=3):
    return {"classes": [f"c{i}" for i in range(classes)], "height": size, "width": size, "channels": channels}


NORM3 = {"mean": [0.3, 0.3, 0.3], "std": [0.3, 0.3, 0.3]}


def _weights_file(tmp_path, classes=1000):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path / "resnet18-tiny-test.pth"
    torch.save(resnet18(num_classes=classes).state_dict(), path)
    return path


# The precision matrix: every model under fp32 and under forced bf16 autocast (emulated on CPUs
# without native bf16 units, so this path runs in CI on any machine). Floors are well above chance
# (1/3) on the tiny quadrant task.
MATRIX = [("airbench", 16, {"width": 8}, {"lr": 0.2}), ("lenet", 16, {}, {"lr": 0.05}),
          ("resnet", 8, {}, {"lr": 0.02}), ("resnet18", 16, {"freeze_backbone": True}, {"lr": 0.05})]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch,size,options,recipe", MATRIX, ids=[m[0] for m in MATRIX])
def test_precision_matrix_every_model_learns_with_a_finite_falling_loss(arch, size, options, recipe, precision,
                                                                        tiny_split, tmp_path, monkeypatch):
    from imgpipe.torchenv import precision_mode

    monkeypatch.setenv("IMGPIPE_FORCE_BF16", "1" if precision == "bf16" else "0")
    assert precision_mode(torch.device("cpu"), "auto") == precision
    torch.manual_seed(0)
    train, val = tiny_split(24, size), tiny_split(12, size, seed=1)
    model = make_model(arch, _meta(size), NORM3, options)
    if arch == "resnet18":  # from a generated weights file, as train.pretrained loads one
        model[-1].load_pretrained(load_weights_file(_weights_file(tmp_path)), "generated")
    cfg = TrainParams(model=arch, **options, epochs=5, batch_size=8, min_steps_per_epoch=1, momentum=0.9,
                      weight_decay=0.0, schedule="constant", label_smoothing=0.0, ema=False, translate=0,
                      bias_lr_scale=1.0, **recipe)
    state = fit(model, train, val, cfg, flip=False, device=torch.device("cpu"))
    losses = [r["train/loss"] for r in state.history]
    assert all(math.isfinite(v) for r in state.history for v in r.values()), state.history
    assert losses[-1] < 0.8 * losses[0], losses
    logits = predict_logits(model, val.x, 8, bf16=precision == "bf16", tta=True)
    assert torch.isfinite(logits).all()
    accuracy = float((logits.argmax(1) == torch.from_numpy(val.y)).float().mean())
    assert accuracy >= 0.6, (accuracy, losses)


def test_airbench_under_bf16_stays_finite_on_images_that_do_not_span_rgb(monkeypatch):
    # The digits defect: greyscale images stored as RGB, upscaled (2x2 patches repeat pixels), span
    # 4 of the whitening layer's 12 directions. Under bf16 autocast the loss was NaN by step 3.
    from trainkit import make_images

    from imgpipe.contracts import SplitArrays

    monkeypatch.setenv("IMGPIPE_FORCE_BF16", "1")
    grey, y = make_images(48, 8, channels=1)
    x = np.repeat(np.repeat(np.repeat(grey, 2, 1), 2, 2), 3, 3)  # 16x16 RGB, R = G = B
    train, val = SplitArrays(x[:40], y[:40]), SplitArrays(x[40:], y[40:])
    norm = {"mean": [0.2] * 3, "std": [0.3] * 3}
    torch.manual_seed(0)
    model = make_model("airbench", _meta(16), norm, {"width": 8})
    cfg = TrainParams(epochs=2, batch_size=10, min_steps_per_epoch=1, width=8)  # the shipped recipe
    state = fit(model, train, val, cfg, flip=False, device=torch.device("cpu"))
    assert all(math.isfinite(r["train/loss"]) for r in state.history), state.history
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.dtype.is_floating_point)


def test_a_diverging_run_stops_at_once_with_one_line(tiny_split):
    from imgpipe.train.loop import NonFiniteTraining

    model = make_model("lenet", _meta(16), NORM3)
    cfg = TrainParams(model="lenet", epochs=3, batch_size=8, min_steps_per_epoch=1, lr=1e30, momentum=0.0,
                      ema=False, bf16=False)
    with pytest.raises(NonFiniteTraining) as err:
        fit(model, tiny_split(24, 16), tiny_split(6, 16, seed=1), cfg, flip=False, device=torch.device("cpu"))
    message = str(err.value)
    assert "\n" not in message and "is not finite at epoch 1, step " in message and "precision: fp32" in message


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16-cpu", "avx2-only-cpu"])
def test_precision_switch_and_environment_override(monkeypatch, native):
    """Both CPU answers are forced, so the branch this machine does not take runs too."""
    import imgpipe.torchenv as torchenv
    from imgpipe.torchenv import mixed_precision, precision_mode

    monkeypatch.setattr(torchenv, "bf16_supported", lambda: native)
    cpu = torch.device("cpu")
    monkeypatch.delenv("IMGPIPE_FORCE_BF16", raising=False)
    assert precision_mode(cpu, "auto") == ("bf16" if native else "fp32")
    assert mixed_precision(cpu, "auto") == ((True, "bf16 autocast") if native else (False, "fp32"))
    assert precision_mode(cpu, True) == "bf16" and precision_mode(cpu, False) == "fp32"
    assert mixed_precision(cpu, True) == (True, "bf16 autocast" + ("" if native else
                                                                    " (forced; emulated on this CPU, slower)"))
    assert mixed_precision(cpu, False) == (False, "fp32")
    monkeypatch.setenv("IMGPIPE_FORCE_BF16", "1")
    assert precision_mode(cpu, False) == "bf16"
    monkeypatch.setenv("IMGPIPE_FORCE_BF16", "0")
    assert precision_mode(cpu, True) == "fp32"


@pytest.mark.parametrize("gpu_bf16", [True, False], ids=["ampere-or-later", "older-gpu"])
def test_gpu_precision_choice_without_a_gpu(monkeypatch, gpu_bf16):
    """The CUDA choice (bf16 AMP, or fp16 with a GradScaler on GPUs without bf16) is decided by
    code that runs here too: the device's bf16 answer is forced."""
    from imgpipe.torchenv import mixed_precision, precision_mode

    monkeypatch.delenv("IMGPIPE_FORCE_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_bf16)
    cuda = torch.device("cuda")
    assert precision_mode(cuda, "auto") == ("bf16" if gpu_bf16 else "fp16")
    assert mixed_precision(cuda, "auto") == (True, "cuda amp " + ("bf16" if gpu_bf16 else "fp16 + GradScaler"))
    assert precision_mode(cuda, True) == "bf16" and precision_mode(cuda, False) == "fp32"


def test_the_fp16_gradscaler_loop_runs_forced_on_a_cpu(monkeypatch, tiny_split):
    """fp16 + GradScaler is what GPUs without bf16 take: forced here (CPU autocast in float16, a
    CPU GradScaler), the same loop trains with a finite, falling loss and scales its gradients."""
    from imgpipe import torchenv

    monkeypatch.setattr(torchenv, "precision_mode", lambda device, setting="auto": "fp16")
    scaled = []
    real_scaler = torch.amp.GradScaler

    def recording_scaler(device_type, *args, **kwargs):
        scaler = real_scaler(device_type, *args, **kwargs)
        scaled.append(scaler)
        return scaler

    monkeypatch.setattr(torch.amp, "GradScaler", recording_scaler)
    train, val = tiny_split(48, 16), tiny_split(12, 16, seed=1)
    model = make_model("airbench", _meta(16), NORM3, {"width": 8})
    state = fit(model, train, val, TrainParams(epochs=3, width=8, min_steps_per_epoch=4), flip=True,
                device=torch.device("cpu"))
    losses = [r["train/loss"] for r in state.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    assert len(scaled) == 1 and scaled[0].is_enabled() and scaled[0].get_scale() > 0


@pytest.mark.parametrize("schedule", ["triangle", "onecycle", "cosine", "constant"])
def test_one_step_runs_for_every_schedule(schedule, tiny_split):
    # The seed's `-S train.epochs=1 -S train.batch_size=1024` on digits: OneCycleLR divided by zero.
    train, val = tiny_split(20, 16), tiny_split(6, 16, seed=1)
    model = make_model("airbench", _meta(16), NORM3, {"width": 8})
    cfg = TrainParams(epochs=1, batch_size=1024, min_steps_per_epoch=1, schedule=schedule, width=8)
    state = fit(model, train, val, cfg, flip=True, device=torch.device("cpu"))
    assert state.step == 1 and len(state.history) == 1
    record = state.history[0]
    assert all(math.isfinite(v) for v in record.values()), record
    assert 0 < record["lr_last"] <= 0.75 and record["train/loss"] > 0  # airbench's recipe: peak lr 0.75


def test_each_model_takes_its_own_recipe_unless_a_value_is_set():
    from imgpipe.train.recipes import RECIPES, resolve_recipe

    assert TrainParams().lr == "auto"  # the shipped params.yaml says auto too (test_params_defaults)
    lenet = resolve_recipe(TrainParams(model="lenet"))
    assert (lenet.lr, lenet.label_smoothing, lenet.bias_lr_scale) == (0.1, 0.0, 1.0)
    assert resolve_recipe(TrainParams()).lr == RECIPES["airbench"]["lr"] == 0.75
    mine = resolve_recipe(TrainParams(model="lenet", lr=0.03))
    assert mine.lr == 0.03 and mine.momentum == RECIPES["lenet"]["momentum"]  # a set value wins
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainParams(label_smoothing=1.5)


def test_auto_width_and_epochs_follow_the_train_split_size_and_a_set_value_wins():
    from imgpipe.train.recipes import LARGE_TRAIN_SET, resolve_scale

    small = resolve_scale(TrainParams(), LARGE_TRAIN_SET - 1)
    large = resolve_scale(TrainParams(), LARGE_TRAIN_SET)
    assert (small.width, small.epochs) == (16, 10)  # the built-in digits: seconds on a CPU
    assert (large.width, large.epochs) == (64, 24)  # CIFAR-10-sized: airbench94's width
    mine = resolve_scale(TrainParams(width=32, epochs=3), 10**6)
    assert (mine.width, mine.epochs) == (32, 3)
    assert resolve_scale(large, 10) == large  # resolved values stay (the resume key sees numbers)
    with pytest.raises(ValueError, match="epochs"):
        TrainParams(epochs=0)


def test_small_datasets_get_smaller_batches_and_proportional_lr():
    cfg = TrainParams(batch_size=512, lr=0.8, min_steps_per_epoch=8)
    assert effective_batch(1221, cfg) == 153 and effective_batch(34000, cfg) == 512
    assert effective_batch(3, cfg, world=2) == 2
    model = make_model("airbench", _meta(16), NORM3, {"width": 8})
    assert make_optimizer(model, cfg, 128).param_groups[0]["lr"] == pytest.approx(0.2)


def test_early_stopping_restores_the_best_epoch(tiny_split):
    train, val = tiny_split(24, 16), tiny_split(6, 16, seed=1)
    model = make_model("airbench", _meta(16), NORM3, {"width": 8})
    cfg = TrainParams(epochs=30, batch_size=8, width=8, lr=1e-9, early_stopping_patience=2)
    after_epoch = {}

    def snapshot(state, mdl, optimizer):
        after_epoch[state.epoch] = {k: v.detach().clone() for k, v in mdl.state_dict().items()}

    state = fit(model, train, val, cfg, flip=False, device=torch.device("cpu"), on_epoch=snapshot)
    assert state.stopped_early and state.epoch < 30
    best, last = after_epoch[state.best["epoch"]], after_epoch[state.epoch]
    final = model.state_dict()
    assert all(torch.equal(final[k], best[k]) for k in best)  # the best epoch's weights, exactly
    assert not all(torch.equal(final[k], last[k]) for k in last)  # not the last epoch's (BN stats moved)


@pytest.mark.parametrize("arch", ["airbench", "lenet", "resnet", "resnet18"])
def test_models_take_any_channel_count_and_size(arch):
    for channels, size in ((1, (28, 28)), (3, (32, 32)), (3, (40, 24))):
        net = build_model(arch, channels, 7, size)
        net.eval()
        assert net(torch.zeros(2, channels, *size)).shape == (2, 7)


def test_lenet_is_the_tutorial_network():
    net = LeNet(3, 10)
    assert sum(p.numel() for p in net.parameters()) == 62006


def test_models_refuse_tiny_images():
    with pytest.raises(ValueError, match="16x16"):
        LeNet(1, 10, (8, 8))
    with pytest.raises(ValueError, match="8x8"):
        ResNet(1, 10, (4, 4))
    with pytest.raises(PipelineError, match=r"train\.model=lenet: .*16x16.*preprocess\.size"):
        build_model("lenet", 3, 10, (8, 8))
    with pytest.raises(PipelineError, match=r"train\.model=airbench: .*9x9"):
        build_model("airbench", 3, 10, (8, 8))


def test_airbench_whitening_layer_whitens_patches(tiny_split):
    net = AirNet(3, 3, (16, 16), width=8)
    x = torch.from_numpy(tiny_split(32, 16).x).permute(0, 3, 1, 2).float() / 255
    net.init_whitening(x)
    out = net.whiten(x)[:, :12]  # the positive half: one filter per eigenvector
    flat = out.detach().permute(1, 0, 2, 3).reshape(12, -1)
    second_moment = flat @ flat.T / flat.shape[1]  # uncentred, as the whitening is
    off_diagonal = second_moment - torch.diag(second_moment.diagonal())
    assert off_diagonal.abs().max() < 0.05
    assert (second_moment.diagonal() > 0.5).all() and (second_moment.diagonal() < 1.01).all()


def test_checkpoint_round_trip_with_options_and_tta(tmp_path, tiny_split):
    train, val = tiny_split(24, 16), tiny_split(6, 16, seed=1)
    model = make_model("airbench", _meta(16), NORM3, {"width": 8})
    fit(model, train, val, TrainParams(epochs=1, batch_size=8, width=8), flip=True, device=torch.device("cpu"))
    ckpt = model_checkpoint(model, "airbench", _meta(16), NORM3, {"width": 8}, precision="fp32", bf16=False,
                            tta=True)
    torch.save(ckpt, tmp_path / "model.pt")
    loaded, saved = load_checkpoint(tmp_path / "model.pt")
    assert saved["tta"] is True and saved["classes"] == ["c0", "c1", "c2"]
    assert torch.equal(predict_logits(loaded, val.x, 4, tta=True), predict_logits(model, val.x, 4, tta=True))


def test_resnet18_loads_pretrained_weights_and_can_freeze_the_backbone(tmp_path, tiny_split):
    path = _weights_file(tmp_path)
    state = load_weights_file(path)
    model = make_model("resnet18", _meta(16), NORM3, {"freeze_backbone": True})
    model[-1].load_pretrained(state, str(path))
    assert torch.equal(model[-1].backbone.conv1.weight, state["conv1.weight"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["1.backbone.fc.weight", "1.backbone.fc.bias"]
    before = model[-1].backbone.layer1[0].bn1.running_mean.clone()
    fit(model, tiny_split(16, 16), tiny_split(4, 16, seed=1),
        TrainParams(model="resnet18", epochs=1, batch_size=8, lr=0.01), flip=False, device=torch.device("cpu"))
    assert torch.equal(model[-1].backbone.conv1.weight, state["conv1.weight"])  # frozen
    assert torch.equal(model[-1].backbone.layer1[0].bn1.running_mean, before)  # BN stats kept


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_weights_file_carrying_code_is_refused_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload()}, evil)
    with pytest.raises(PipelineError) as err:
        load_weights_file(evil)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{evil}: refused to load") and "weights_only" in message
    assert not (tmp_path / "pwned").exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(PipelineError, match="not a readable torch weights file"):
        load_weights_file(junk)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, foreign)
    model = make_model("resnet18", _meta(16), NORM3)
    with pytest.raises(ValueError, match="not torchvision resnet18 weights"):
        model[-1].load_pretrained(load_weights_file(foreign), str(foreign))
