import json

import numpy as np

from imgpipe.augment import apply_drawn_transforms, draw, norm_stats, write_train_split
from imgpipe.params.augment import AugmentParams

from factories import class_images

OFF = AugmentParams(rotate=False, crop=False, color=False, hflip=False, vflip=False)


def test_disabled_policy_is_identity():
    images, _ = class_images(4, 2, size=16)
    d = draw(OFF, len(images), copy=1)
    assert np.array_equal(apply_drawn_transforms(images, d, slice(0, len(images))), images)


def test_hflip_alone_mirrors_exactly_the_drawn_images():
    images, _ = class_images(8, 2, size=16)
    cfg = OFF.model_copy(update={"hflip": True})
    d = draw(cfg, len(images), copy=1)
    out = apply_drawn_transforms(images, d, slice(0, len(images)))
    assert 0 < d.flip_h.sum() < len(images)
    for img, res, flipped in zip(images, out, d.flip_h, strict=True):
        assert np.array_equal(res, img[:, ::-1] if flipped else img)


def test_each_switch_changes_pixels():
    images, _ = class_images(4, 2, size=16)
    for switch in ("rotate", "crop", "color", "vflip"):
        cfg = OFF.model_copy(update={switch: True})
        out = apply_drawn_transforms(images, draw(cfg, len(images), copy=1), slice(0, len(images)))
        assert not np.array_equal(out, images), switch


def test_augmentation_is_seeded_and_independent_of_batching():
    images, _ = class_images(10, 3, size=16)
    cfg = AugmentParams(hflip=True)
    d = draw(cfg, len(images), copy=1)
    whole = apply_drawn_transforms(images, d, slice(0, 30))
    parts = np.concatenate([apply_drawn_transforms(images[s:s + 7], d, slice(s, min(s + 7, 30))) for s in range(0, 30, 7)])
    assert np.array_equal(whole, parts)
    other = apply_drawn_transforms(images, draw(cfg.model_copy(update={"seed": 8}), 30, copy=1), slice(0, 30))
    assert not np.array_equal(whole, other)


def test_grayscale_images_are_supported():
    images, _ = class_images(4, 2, size=16, channels=1)
    out = apply_drawn_transforms(images, draw(AugmentParams(), len(images), copy=1), slice(0, len(images)))
    assert out.shape == images.shape and out.dtype == np.uint8


def test_train_split_holds_originals_then_copies(tmp_path):
    images, labels = class_images(5, 2, size=16)
    cfg = AugmentParams(copies=2)
    rows = write_train_split(images, labels, cfg, tmp_path / "x.npy", tmp_path / "y.npy")
    x, y = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy")
    assert rows == 30 and x.shape == (30, 16, 16, 3)
    assert np.array_equal(x[:10], images) and np.array_equal(y, np.tile(labels, 3))
    again = tmp_path / "again"
    again.mkdir()
    write_train_split(images, labels, cfg, again / "x.npy", again / "y.npy")
    assert (again / "x.npy").read_bytes() == (tmp_path / "x.npy").read_bytes()


def test_channel_stats_match_numpy():
    images, _ = class_images(6, 2, size=8)
    mean, std = norm_stats(images, batch=5)
    ref = images.astype(np.float64) / 255
    assert np.allclose(mean, ref.mean((0, 1, 2)), atol=1e-6)
    assert np.allclose(std, ref.std((0, 1, 2)), atol=1e-5)
    json.dumps(mean)


def test_bytes_do_not_depend_on_torch_thread_count():
    import torch

    images, _ = class_images(40, 3, size=32, seed=3)
    cfg = AugmentParams(hflip=True, hue=0.1)
    d = draw(cfg, len(images), copy=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = apply_drawn_transforms(images, d, slice(0, len(images)))
        torch.set_num_threads(max(2, before))
        many = apply_drawn_transforms(images, d, slice(0, len(images)))
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, many)


def test_hflip_auto_mirrors_photos_not_handwriting():
    from imgpipe.augment import resolve_hflip

    auto = AugmentParams()
    assert auto.hflip == "auto"
    assert resolve_hflip(auto, "digits").hflip is False and resolve_hflip(auto, "mnist").hflip is False
    assert resolve_hflip(auto, "cifar10").hflip is True
    assert resolve_hflip(auto, "../shared/data/cifar10-train.tar.gz").hflip is True
    assert resolve_hflip(AugmentParams(hflip=False), "cifar10").hflip is False  # a set value wins
