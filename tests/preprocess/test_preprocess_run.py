"""The stage end to end: the data contract, determinism across worker counts, array layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from ppkit import cfg, encode, jpeg_with_orientation, noise, rgb, write_cifar10_raw, write_idx_raw, write_raw

from imgpipe.errors import PipelineError
from imgpipe.io import read_parquet
from imgpipe.preprocess.pipeline import manifest_columns, preprocess_images
from imgpipe.preprocess.shards import gather
from imgpipe.rawdata import list_items, pack_images

REPO = Path(__file__).resolve().parents[2]


def mixed_files(n: int) -> dict[str, bytes]:
    """``n`` images of assorted formats and sizes in train/ and test/, with some bad files."""
    files: dict[str, bytes] = {}
    for i in range(n):
        split = "train" if i % 5 else "test"
        kind = i % 6
        image = rgb(12 + i % 9, 10 + i % 7, seed=i)
        if kind == 0:
            files[f"{split}/c{i % 3}/{i:04d}.png"] = encode(image, "PNG")
        elif kind == 1:
            files[f"{split}/c{i % 3}/{i:04d}.jpg"] = encode(image, "JPEG", quality=80)
        elif kind == 2:
            files[f"{split}/c{i % 3}/{i:04d}.gif"] = encode(image.convert("P"), "GIF")
        elif kind == 3:
            files[f"{split}/c{i % 3}/{i:04d}.webp"] = encode(image, "WEBP", quality=80)
        elif kind == 4:
            files[f"{split}/c{i % 3}/{i:04d}.jpeg"] = jpeg_with_orientation(image, 8)
        else:
            files[f"{split}/c{i % 3}/{i:04d}.png"] = encode(Image.fromarray(noise(9, 9, 4, seed=i)), "PNG")
        if i % 97 == 0:
            files[f"{split}/c{i % 3}/bad{i:04d}.png"] = b"" if i % 2 else b"not an image"
    files["labels.csv"] = b"file,label\n"
    return files


def output_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_output_follows_the_data_contract(tmp_path):
    raw = write_raw(tmp_path / "raw", mixed_files(40), label_file="labels.csv")
    out = tmp_path / "pre"
    summary = preprocess_images(raw, out, cfg(), progress=False)

    assert sorted(output_bytes(out)) == [
        "info.json", "manifest.parquet", "rejects.parquet", "shards/shard-00000.npy",
    ]
    manifest = read_parquet(out / "manifest.parquet")
    assert list(manifest.columns) == manifest_columns(3)
    expected_ids = [it.item_id for it in list_items(raw) if not it.item_id.split("/")[-1].startswith("bad")]
    assert manifest["item_id"].tolist() == expected_ids  # list_items order, rejects left out
    assert manifest["source_path"].tolist() == expected_ids
    assert manifest["source_index"].isna().all()
    assert set(manifest["source_split"]) == {"train", "test"}
    assert set(manifest["orig_format"]) == {"PNG", "JPEG", "GIF", "WEBP"}
    assert {"RGB", "RGBA", "P"} <= set(manifest["orig_mode"])
    row = manifest.set_index("item_id").loc["train/c1/0001.jpg"]
    assert (row.orig_width, row.orig_height) == (10 + 1 % 7, 12 + 1 % 9)
    assert row.orig_bytes == (raw / "files/train/c1/0001.jpg").stat().st_size
    rotated = manifest.set_index("item_id").loc["train/c1/0004.jpeg"]  # EXIF 8 swaps the sides
    assert (rotated.orig_width, rotated.orig_height) == (12 + 4 % 9, 10 + 4 % 7)
    assert manifest["phash"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert manifest["pixel_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()

    pixels = gather(out, manifest["shard"].to_numpy(), manifest["shard_offset"].to_numpy())
    assert pixels.shape == (len(manifest), 16, 16, 3)
    import hashlib

    assert [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels] == manifest["pixel_sha256"].tolist()
    np.testing.assert_allclose(manifest["mean_c1"], pixels[..., 1].reshape(len(pixels), -1).mean(axis=1))

    rejects = read_parquet(out / "rejects.parquet")
    assert rejects["item_id"].tolist() == ["test/c0/bad0000.png"]
    info = json.loads((out / "info.json").read_text())
    assert info["counts"] == {"items": 41, "images": 40, "rejects": 1}
    assert info["mode"] == "RGB" and info["size"] == [16, 16] and info["channels"] == 3
    assert info["shards"] == [{"file": "shards/shard-00000.npy", "images": 40}]
    assert summary["images"] == 40 and summary["rejects_by_reason"] == {"not_an_image": 1}


def test_empty_rejects_table_keeps_its_schema(tmp_path):
    raw = write_raw(tmp_path / "raw", {"a.png": encode(rgb(), "PNG")})
    preprocess_images(raw, tmp_path / "pre", cfg(mode="L"), progress=False)
    schema = pq.read_schema(tmp_path / "pre" / "rejects.parquet")
    assert schema.names == ["item_id", "source_path", "reason"]
    assert all(str(t) == "large_string" for t in schema.types)
    manifest = read_parquet(tmp_path / "pre" / "manifest.parquet")
    assert list(manifest.columns) == manifest_columns(1)
    assert np.load(tmp_path / "pre" / "shards" / "shard-00000.npy").shape == (1, 16, 16, 1)


def test_output_bytes_are_identical_for_1_2_and_4_workers(tmp_path):
    # 600 items: 3 chunks of 256; shards of ~0.1 MB hold 136 images, so 5 shards.
    raw = write_raw(tmp_path / "raw", mixed_files(600))
    outputs = []
    for workers in (1, 2, 4):
        out = tmp_path / f"pre{workers}"
        summary = preprocess_images(raw, out, cfg(workers=workers, shard_max_mb=0.1), progress=False)
        assert summary["workers"] == min(workers, 3)
        outputs.append(output_bytes(out))
    assert len([name for name in outputs[0] if name.startswith("shards/")]) == 5
    assert outputs[0] == outputs[1] == outputs[2]


def test_packed_images_give_the_same_output_as_loose_files_for_any_worker_count(tmp_path):
    files = mixed_files(300)
    loose = write_raw(tmp_path / "loose", files)
    packed = write_raw(tmp_path / "packed", files)
    pack_images(packed, max_pack_bytes=20_000)  # several packs
    assert len(list((packed / "packed").glob("*.tar"))) > 1
    expected = None
    for raw, workers in ((loose, 1), (packed, 1), (packed, 2)):
        out = tmp_path / f"pre-{raw.name}-{workers}"
        preprocess_images(raw, out, cfg(workers=workers), progress=False)
        got = output_bytes(out)
        expected = expected or got
        assert got == expected, (raw.name, workers)


def test_rerun_replaces_the_output_atomically(tmp_path):
    raw = write_raw(tmp_path / "raw", {"a.png": encode(rgb(), "PNG"), "b.png": encode(rgb(seed=1), "PNG")})
    out = tmp_path / "pre"
    preprocess_images(raw, out, cfg(shard_max_mb=0.001), progress=False)
    assert (out / "shards" / "shard-00001.npy").exists()
    preprocess_images(raw, out, cfg(), progress=False)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-00000.npy"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cifar_layout_reads_each_batch_once_and_keeps_pixels(tmp_path, monkeypatch):
    raw, stored = write_cifar10_raw(tmp_path / "raw", per_file=5)
    from imgpipe import arrayfiles

    loads = []
    real = arrayfiles.load_cifar_batch
    monkeypatch.setattr(arrayfiles, "load_cifar_batch", lambda p: loads.append(Path(p).name) or real(p))
    summary = preprocess_images(raw, tmp_path / "pre", cfg(size=(32, 32)), progress=False)
    assert sorted(loads) == sorted(["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                    "data_batch_5", "test_batch"])
    manifest = read_parquet(tmp_path / "pre" / "manifest.parquet")
    monkeypatch.undo()
    assert manifest["item_id"].tolist() == [it.item_id for it in list_items(raw)]
    assert summary["images"] == 30
    assert manifest["source_index"].tolist() == list(range(5)) * 6
    assert manifest["source_split"].tolist() == ["train"] * 25 + ["test"] * 5
    assert set(manifest["orig_format"]) == {"CIFAR"} and set(manifest["orig_mode"]) == {"RGB"}
    assert set(manifest["orig_bytes"]) == {32 * 32 * 3}
    pixels = gather(tmp_path / "pre", manifest["shard"].to_numpy(), manifest["shard_offset"].to_numpy())
    np.testing.assert_array_equal(pixels, np.concatenate(stored))


def test_idx_layout_to_rgb(tmp_path):
    raw, stored = write_idx_raw(tmp_path / "raw", per_file=4)
    preprocess_images(raw, tmp_path / "pre", cfg(size=(28, 28), mode="RGB", workers=2), progress=False)
    manifest = read_parquet(tmp_path / "pre" / "manifest.parquet")
    assert manifest["item_id"].tolist() == [it.item_id for it in list_items(raw)]
    assert set(manifest["orig_format"]) == {"IDX"} and set(manifest["orig_mode"]) == {"L"}
    assert set(manifest["orig_bytes"]) == {28 * 28}
    pixels = gather(tmp_path / "pre", manifest["shard"].to_numpy(), manifest["shard_offset"].to_numpy())
    np.testing.assert_array_equal(pixels[..., 2], np.concatenate(stored))


def test_no_decodable_image_is_a_pipeline_error_naming_the_raw_dir(tmp_path):
    raw = write_raw(tmp_path / "raw", {"a.png": b"", "b.jpg": b"junk"})
    with pytest.raises(PipelineError, match=r"no decodable images in .*raw"):
        preprocess_images(raw, tmp_path / "pre", cfg(), progress=False)
    assert not (tmp_path / "pre").exists()


def test_stage_main_reads_params_and_writes_metrics(tmp_path, monkeypatch):
    write_raw(tmp_path / "data" / "raw", {"x/a.png": encode(rgb(), "PNG"), "x/b.png": b""})
    params = {
        "paths": {"raw": "data/raw", "preprocessed": "data/pre"},
        "preprocess": {"mode": "L", "size": [8, 8], "workers": 1},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    from stages import preprocess as stage

    stage.main()
    metrics = json.loads((tmp_path / "metrics" / "preprocess.json").read_text())
    assert metrics == {"images": 1, "items": 2, "rejects": 1, "rejects_by_reason": {"empty": 1}, "shards": 1}
    assert np.load(tmp_path / "data/pre/shards/shard-00000.npy").shape == (1, 8, 8, 1)


def test_stage_main_fails_with_one_line_on_no_images(tmp_path, monkeypatch, capsys):
    write_raw(tmp_path / "data" / "raw", {"a.png": b""})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"preprocess": {"workers": 1}}))
    monkeypatch.chdir(tmp_path)
    from stages import preprocess as stage

    with pytest.raises(SystemExit) as info:
        stage.main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("preprocess failed: no decodable images in data/raw"), err


def test_stage_path_never_imports_torch(tmp_path):
    raw = write_raw(tmp_path / "raw", {"a.png": encode(rgb(), "PNG")})
    code = (
        "import sys; from pathlib import Path; import stages.preprocess; "
        "from imgpipe.preprocess.pipeline import preprocess_images; from imgpipe.params.preprocess import PreprocessParams; "
        f"preprocess_images(Path({str(raw)!r}), Path({str(tmp_path / 'pre')!r}), PreprocessParams(workers=1), progress=False); "
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_manifest_dtypes(tmp_path):
    raw = write_raw(tmp_path / "raw", {"a.png": encode(rgb(), "PNG")})
    preprocess_images(raw, tmp_path / "pre", cfg(), progress=False)
    manifest = read_parquet(tmp_path / "pre" / "manifest.parquet")
    for name in ("orig_width", "orig_height", "orig_bytes", "shard", "shard_offset"):
        assert manifest[name].dtype == np.int64, name
    for name in ("mean_c0", "std_c2", "brightness_p50", "entropy", "blur"):
        assert manifest[name].dtype == np.float64, name
    # Nullable int: int64 in the file, whatever pandas makes of an all-null column.
    assert str(pq.read_schema(tmp_path / "pre" / "manifest.parquet").field("source_index").type) == "int64"


def test_a_worker_killed_by_a_native_crash_fails_the_stage_instead_of_hanging(tmp_path, monkeypatch):
    import os

    from imgpipe.preprocess import pipeline as preprocess

    raw = write_raw(tmp_path / "raw", {f"{i}.png": encode(rgb(seed=i), "PNG") for i in range(3)})
    monkeypatch.setattr(preprocess, "chunk_size", lambda c: 1)
    monkeypatch.setattr(preprocess, "process_chunk", lambda chunk, c: os._exit(1))  # as a segfault would
    with pytest.raises(PipelineError, match=r"a worker process died with chunk \d+ \(\d\.png \.\. \d\.png\) in flight"):
        preprocess_images(raw, tmp_path / "pre", cfg(workers=2), progress=False)
    assert not (tmp_path / "pre").exists()


def test_read_bytes_reads_whole_files_of_any_size(tmp_path):
    from imgpipe.preprocess.pipeline import read_bytes

    for size in (0, 1, 65535, 65536, 65537, 3 * (1 << 20) + 5):
        data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        (tmp_path / "f").write_bytes(data)
        assert read_bytes(str(tmp_path / "f")) == data
