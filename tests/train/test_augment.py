import json

import numpy as np

from imgpipe.augment import apply_drawn_transforms, draw, norm_stats
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


def _augment(root, images, labels, store: str, copies: int):
    """The real augment build over a preprocessed ``store`` of ``images`` (all train but 2 val, 2 test)."""
    from imgpipe.augment import build

    from factories import split_frame, write_store

    shard, offset, stored = write_store(root / "pre", images, store)
    splits = ["train"] * (len(images) - 4) + ["val", "val", "test", "test"]
    dataset = split_frame([f"i{k}.png" for k in range(len(images))], labels, splits, shard, offset)
    (root / "aug").mkdir(parents=True)
    meta = build(dataset, root / "pre", root / "aug", AugmentParams(copies=copies), ["a", "b"], jpeg_quality=90)
    return meta, stored


def test_no_copies_writes_an_index_and_no_pixels(tmp_path):
    from imgpipe.contracts import load_items
    from imgpipe.storedsplit import load_split

    images, labels = class_images(5, 2, size=16)
    meta, stored = _augment(tmp_path, images, labels, "pixels", 0)
    assert sorted(p.name for p in (tmp_path / "aug").iterdir()) == [
        "meta.json", "norm.json", "test_items.parquet", "train_items.parquet", "val_items.parquet"]
    train = load_split(tmp_path / "aug", "train")  # preprocessed dir from meta.json
    assert meta["counts"]["train"] == 6 and meta["store"] == "pixels"
    assert np.array_equal(np.asarray(train.x), images[:6]) and np.array_equal(train.y, labels[:6])
    items = load_items(tmp_path / "aug", "test")
    assert items["pixels_in"].tolist() == ["preprocessed"] * 2 and items["shard_offset"].tolist() == [8, 9]
    assert np.array_equal(load_split(tmp_path / "aug", "test").x[1], images[9])


def test_copies_are_stored_like_the_originals_and_byte_stable(tmp_path):
    from imgpipe.contracts import load_items
    from imgpipe.preprocess.shards import decode_image, encode_image
    from imgpipe.storedsplit import load_split

    images, labels = class_images(4, 2, size=72)  # 72x72: preprocess.store auto picks jpeg
    _augment(tmp_path / "a", images, labels, "jpeg", 2)
    _augment(tmp_path / "b", images, labels, "jpeg", 2)
    aug = tmp_path / "a" / "aug"
    assert sorted(p.name for p in (aug / "shards").iterdir()) == ["shard-00000.bin", "shard-00000.idx.npy"]
    for rel in ("shards/shard-00000.bin", "train_items.parquet", "norm.json"):
        assert (aug / rel).read_bytes() == (tmp_path / "b" / "aug" / rel).read_bytes()
    train = load_split(aug, "train")
    items = load_items(aug, "train")
    assert len(train.y) == 12 and items["copy"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert items["pixels_in"].tolist() == ["preprocessed"] * 4 + ["augmented"] * 8
    originals = np.asarray(train.x[:4])
    d = draw(AugmentParams(copies=2), 4, copy=2)
    want = apply_drawn_transforms(originals, d, slice(0, 4))
    want = np.stack([decode_image(encode_image(image, "jpeg", 90), 3) for image in want])
    assert np.array_equal(np.asarray(train.x[8:]), want)
    assert np.array_equal(train.y, np.tile(labels[:4], 3))


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
