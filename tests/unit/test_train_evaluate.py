import json

import numpy as np
import pytest
import torch

from imgpipe.errors import PipelineError
from imgpipe.inference import load_checkpoint, predict_logits
from imgpipe.models import LeNet, ResNet, build_model
from imgpipe.params.train import TrainParams
from imgpipe.training.live import EpochLog
from imgpipe.training.loop import train

from factories import class_images


def _augmented(tmp_path, size=32, channels=3):
    classes = ["a", "b", "c"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 24, 0), ("val", 6, 1), ("test", 6, 2)):
        x, y = class_images(n, len(classes), size=size, channels=channels, seed=seed)
        np.save(tmp_path / f"{split}_x.npy", x)
        np.save(tmp_path / f"{split}_y.npy", y.astype(np.int64))
    meta = {"classes": classes, "height": size, "width": size, "channels": channels, "counts": {}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "norm.json").write_text(json.dumps({"mean": [0.3] * channels, "std": [0.3] * channels}))
    return tmp_path


@pytest.mark.parametrize("arch", ["lenet", "resnet"])
def test_models_take_any_channel_count_and_size(arch):
    for channels, size in ((1, (28, 28)), (3, (32, 32)), (3, (40, 24))):
        net = build_model(arch, channels, 7, size)
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


@pytest.fixture(autouse=True)
def _outside_any_repo(tmp_path, monkeypatch):
    # DVCLive inspects the git/DVC repo around the working directory; keep it out of ours.
    monkeypatch.chdir(tmp_path)


def test_train_learns_and_checkpoint_loads_weights_only(tmp_path):
    aug = _augmented(tmp_path / "aug")
    cfg = TrainParams(epochs=4, batch_size=16, lr=0.05, threads=1)
    with EpochLog(tmp_path / "live") as log_epoch:
        checkpoint, final = train(aug, cfg, log_epoch, progress=False)
    assert final["val/acc"] >= 0.9
    torch.save(checkpoint, tmp_path / "model.pt")
    model, ckpt = load_checkpoint(tmp_path / "model.pt")
    x = np.load(aug / "test_x.npy")
    pred = predict_logits(model, x, 8).argmax(1).numpy()
    assert (pred == np.load(aug / "test_y.npy")).mean() >= 0.9
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert set(metrics) >= {"train", "val", "step"} and metrics["step"] == 3
    tsv = (tmp_path / "live" / "plots" / "metrics" / "val" / "acc.tsv").read_text().splitlines()
    assert tsv[0] == "step\tacc" and len(tsv) == 5, "one row per epoch, no timestamps"


def test_training_is_deterministic(tmp_path):
    aug = _augmented(tmp_path / "aug", channels=1)
    cfg = TrainParams(model="resnet", epochs=1, batch_size=16, threads=1)
    a, _ = train(aug, cfg, progress=False)
    b, _ = train(aug, cfg, progress=False)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
