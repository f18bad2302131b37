"""A stage's outputs land as one unit, fsynced, and a disk error is one line naming the path."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgpipe import io as imgio
from imgpipe.io import atomic_dir, commit_outputs, write_json
from imgpipe.stage import describe_os_error
from tests.preprocess.ppkit import encode, rgb, write_raw

ROOT = Path(__file__).resolve().parents[2]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def write_both(folder: Path, text: str, fail_between: bool = False) -> None:
    with commit_outputs(folder / "out", folder / "metrics.json"):
        with atomic_dir(folder / "out") as tmp:
            (tmp / "data.txt").write_text(text)
        if fail_between:
            raise RuntimeError("stage failed after its first output")
        write_json(folder / "metrics.json", {"text": text})


def test_outputs_land_together_or_not_at_all(tmp_path):
    write_both(tmp_path, "old")
    with pytest.raises(RuntimeError):
        write_both(tmp_path, "new", fail_between=True)
    assert (tmp_path / "out" / "data.txt").read_text() == "old"
    assert (tmp_path / "metrics.json").read_text() == '{\n  "text": "old"\n}\n'
    assert leftovers(tmp_path) == []
    write_both(tmp_path, "new")
    assert (tmp_path / "out" / "data.txt").read_text() == "new"
    assert '"new"' in (tmp_path / "metrics.json").read_text()
    assert leftovers(tmp_path) == []


def test_a_declared_output_is_not_in_place_before_the_block_ends(tmp_path):
    with commit_outputs(tmp_path / "a.json"):
        write_json(tmp_path / "a.json", 1)
        assert not (tmp_path / "a.json").exists()
        write_json(tmp_path / "cache.json", 2)  # not declared: lands at once
        assert (tmp_path / "cache.json").read_text() == "2\n"
    assert (tmp_path / "a.json").read_text() == "1\n"


@pytest.mark.parametrize(("first", "failing"), [("out", "metrics.json"), ("metrics.json", "out")])
def test_a_failed_rename_puts_the_earlier_outputs_back(tmp_path, monkeypatch, first, failing):
    write_both(tmp_path, "old")
    real_replace = os.replace
    failed = []

    def replace(src, dst):  # the first rename of the new `failing` into place fails
        if Path(dst).name == failing and ".tmp-" in Path(src).name and not failed:
            failed.append(src)
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(imgio.os, "replace", replace)
    with pytest.raises(OSError) as caught, commit_outputs(tmp_path / "out", tmp_path / "metrics.json"):
        for name in (first, failing):  # the order the outputs are written is the order of the renames
            if name == "out":
                with atomic_dir(tmp_path / "out") as tmp:
                    (tmp / "data.txt").write_text("new")
            else:
                write_json(tmp_path / "metrics.json", {"text": "new"})
    assert caught.value.filename == str((tmp_path / failing).absolute())
    assert (tmp_path / "out" / "data.txt").read_text() == "old"
    assert '"old"' in (tmp_path / "metrics.json").read_text()
    assert leftovers(tmp_path) == []


def test_renamed_files_and_their_folders_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync_path = imgio.fsync_path
    monkeypatch.setattr(imgio, "fsync_path", lambda p: (synced.append(Path(p).name), real_fsync_path(p)))
    write_both(tmp_path, "x")
    assert "data.txt" in synced, "the file inside the output folder"
    assert any(name.startswith(".metrics.json.tmp-") for name in synced), "the file, before its rename"
    assert synced[-1] == tmp_path.name, "the folder holding the new names, after the renames"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_disk_error_names_the_final_path_not_the_temporary_one(tmp_path, code):
    final = tmp_path / "out"
    with pytest.raises(OSError) as caught, atomic_dir(final) as tmp:
        raise OSError(code, os.strerror(code), str(tmp / "sub" / "x.png"))
    assert caught.value.errno == code
    assert caught.value.filename == str(final / "sub" / "x.png")
    line = describe_os_error(caught.value)
    assert line.startswith(f"{final / 'sub' / 'x.png'}: {os.strerror(code)}; ")
    assert "\n" not in line


def test_an_error_about_an_input_keeps_its_own_path(tmp_path):
    with pytest.raises(FileNotFoundError) as caught, atomic_dir(tmp_path / "out"):
        (tmp_path / "missing-input.png").read_bytes()
    assert caught.value.filename == str(tmp_path / "missing-input.png")


def test_a_library_error_without_errno_is_named_by_its_text(tmp_path):
    # pyarrow raises OSError("... [errno 28] No space left on device") with no errno attribute.
    with pytest.raises(OSError) as caught, atomic_dir(tmp_path / "out"):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert caught.value.errno == errno.ENOSPC
    assert describe_os_error(caught.value) == (
        f"{tmp_path / 'out'}: No space left on device; the disk is full: free some space and rerun")


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_a_stage_on_a_full_disk_says_one_line_and_keeps_its_previous_outputs(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    write_raw(tmp_path / "data" / "raw", {f"c{i % 2}/{i}.png": encode(rgb(40, 40, seed=i), "PNG") for i in range(6)})
    previous = tmp_path / "data" / "preprocessed"
    previous.mkdir(parents=True)
    (previous / "manifest.parquet").write_text("previous run")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "preprocess.json").write_text("previous run")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", TQDM_DISABLE="1")
    proc = subprocess.run([sys.executable, "-m", "stages.preprocess"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "failed" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].startswith("preprocess failed: data/preprocessed"), errors[0]
    assert "File too large; the file is larger than" in errors[0], errors[0]
    assert (previous / "manifest.parquet").read_text() == "previous run"
    assert (tmp_path / "metrics" / "preprocess.json").read_text() == "previous run"
    assert leftovers(tmp_path / "data") == [] and leftovers(tmp_path / "metrics") == []
