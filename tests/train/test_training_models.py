"""Each model trains a few steps on tiny generated data and its loss falls; one-step runs work."""

import os

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


@pytest.mark.parametrize("arch,size,lr,options", [("airbench", 16, 0.2, {"width": 8}), ("lenet", 16, 0.05, {}),
                                                  ("resnet", 8, 0.05, {}), ("resnet18", 16, 0.01, {})])
def test_each_model_learns_tiny_data(arch, size, lr, options, tiny_split):
    torch.manual_seed(0)
    train, val = tiny_split(24, size), tiny_split(6, size, seed=1)
    model = make_model(arch, _meta(size), NORM3, options)
    cfg = TrainParams(model=arch, **options, epochs=5, batch_size=8, min_steps_per_epoch=1, lr=lr, momentum=0.9,
                      weight_decay=0.0,
                      schedule="constant", label_smoothing=0.0, ema=False, translate=0, bias_lr_scale=1.0)
    state = fit(model, train, val, cfg, flip=False, device=torch.device("cpu"))
    losses = [r["train/loss"] for r in state.history]
    assert losses[-1] < 0.7 * losses[0], losses
    logits = predict_logits(model, val.x, 8, tta=True)
    assert logits.shape == (6, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("schedule", ["triangle", "onecycle", "cosine", "constant"])
def test_one_step_runs_for_every_schedule(schedule, tiny_split):
    # The seed's `-S train.epochs=1 -S train.batch_size=1024` on digits: OneCycleLR divided by zero.
    train, val = tiny_split(20, 16), tiny_split(6, 16, seed=1)
    model = make_model("airbench", _meta(16), NORM3, {"width": 8})
    cfg = TrainParams(epochs=1, batch_size=1024, min_steps_per_epoch=1, schedule=schedule, width=8)
    state = fit(model, train, val, cfg, flip=True, device=torch.device("cpu"))
    assert state.step == 1 and len(state.history) == 1


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
    state = fit(model, train, val, cfg, flip=False, device=torch.device("cpu"))
    assert state.stopped_early and state.epoch < 30


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


def _weights_file(tmp_path, classes=1000):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path / "resnet18-tiny-test.pth"
    torch.save(resnet18(num_classes=classes).state_dict(), path)
    return path


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
