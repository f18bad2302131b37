"""`imgpipe diff` between two committed versions of the reproduced project, end to end: real dvc,
real git, the second version made the way a team makes one (a Label Studio export that corrects
some labels, leaves some images out and brings a new class). The diff names exactly those changes,
in Markdown and JSON, lists exactly the test images whose prediction flipped, works from a fresh
clone through the remote, and says in one line when a version's outputs are nowhere to be found.
The dataset leaves as a Hugging Face parquet export and comes back in as another project's source
with the same item ids, labels and splits."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest

from imgpipe.preprocess.shards import gather

from conftest import Clone, copy_clone, env, make_clone

pytestmark = pytest.mark.e2e

EXCLUDED = 3  # tasks left out of the export: their images lose their label
CORRECTED = 2  # labels a person changed to another digit
NEW_CLASS, NEW_CLASS_IMAGES = "ten", 30


def imgpipe(clone: Clone, *args: str, check: bool = True, home=None):
    e = env() if home is None else dict(env(), HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "imgpipe.cli", *args], cwd=clone.root, env=e,
                          capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"imgpipe {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def flips(before: pd.DataFrame, after: pd.DataFrame) -> tuple[set[str], set[str]]:
    both = before.merge(after, on="item_id", suffixes=("_a", "_b"))
    right_a, right_b = both.actual_a == both.predicted_a, both.actual_b == both.predicted_b
    return set(both.item_id[right_a & ~right_b]), set(both.item_id[~right_a & right_b])


def test_diff_names_the_changes_between_two_versions(reproduced_once, tmp_path):
    clone = copy_clone(reproduced_once, tmp_path / "project")
    clone.commit("v1")
    clone.git("tag", "-a", "dataset@v1.0.0", "-m", "v1")
    predictions_v1 = pd.read_csv(clone.root / "metrics/eval/predictions.csv", dtype=str)

    # v1.1.0: every current label goes out as Label Studio tasks; a person edits the export.
    imgpipe(clone, "review", "--label-studio", "annotations/ls.json")
    tasks = sorted(json.loads((clone.root / "annotations/ls.json").read_text()), key=lambda t: t["data"]["item_id"])
    excluded, corrected, new_class, kept = set(), {}, set(), []
    for i, task in enumerate(tasks):
        item, choice = task["data"]["item_id"], task["annotations"][0]["result"][0]["value"]["choices"]
        if i < EXCLUDED:
            excluded.add(item)
            continue
        if i < EXCLUDED + CORRECTED:
            corrected[item] = (choice[0], "1" if choice[0] != "1" else "2")
            choice[:] = [corrected[item][1]]
        elif i % 40 == 0 and len(new_class) < NEW_CLASS_IMAGES:
            new_class.add(item)
            choice[:] = [NEW_CLASS]
        kept.append(task)
    assert len(new_class) == NEW_CLASS_IMAGES
    (clone.root / "annotations/ls.json").write_text(json.dumps(kept))
    clone.set_params({"labels.path": "annotations/ls.json"})
    clone.dvc("repro")
    clone.commit("v1.1: labels from Label Studio")
    clone.git("tag", "-a", "dataset@v1.1.0", "-m", "v1.1")
    clone.git("tag", "-a", "dataset-images@v1.1.0", "-m", "v1.1 images")  # dvc.yaml's second artifact
    predictions_v2 = pd.read_csv(clone.root / "metrics/eval/predictions.csv", dtype=str)

    out = tmp_path / "diff"
    report = json.loads(imgpipe(clone, "diff", "dataset@v1.0.0", "dataset@v1.1.0", "--json",
                                "--out", str(out)).stdout)
    d = report["dataset"]
    assert {r["item_id"] for r in d["removed"]} == excluded
    assert d["added"] == []
    relabelled = {r["item_id"]: (r["old"], r["new"]) for r in d["relabelled"]}
    assert {k: v for k, v in relabelled.items() if v[1] != NEW_CLASS} == corrected
    assert {k for k, v in relabelled.items() if v[1] == NEW_CLASS} == new_class
    assert {r["source_b"] for r in d["relabelled"]} == {"label-studio-json:annotations/ls.json"}
    ten = next(r for r in d["classes"] if r["class"] == NEW_CLASS)
    assert (ten["a"], ten["b"]) == (0, NEW_CLASS_IMAGES)
    assert {(r["item_id"], r["decision"]) for r in d["findings"]["appeared"]
            if r["check"] == "label_import"} == {(i, "quarantined") for i in excluded}
    assert d["card_hash"]["a"] != d["card_hash"]["b"]

    right_to_wrong, wrong_to_right = flips(predictions_v1, predictions_v2)
    f = report["model"]["flips"]
    assert {r["item_id"] for r in f["right_to_wrong"]} == right_to_wrong
    assert {r["item_id"] for r in f["wrong_to_right"]} == wrong_to_right
    assert {m["name"] for m in report["model"]["metrics"]} >= {"accuracy", "f1_macro"}

    text = (out / "report.md").read_text()
    assert f"{EXCLUDED} removed, {len(relabelled)} relabelled" in text
    for item, (old, new) in corrected.items():
        assert f"`{item}` | {old} → {new} |" in text
    assert (out / "classes.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "per_class.png").exists() and (out / "flips.png").exists() == bool(right_to_wrong)
    assert json.loads((out / "report.json").read_text()) == report

    # A fresh clone with no cache: one line saying what is missing and how to get it...
    home = tmp_path / "home"  # the default remote (~/dvc-storage/imgpipe) lives under HOME
    home.mkdir()
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(clone.root), str(origin)], check=True, env=env())
    fresh = Clone(tmp_path / "fresh")
    subprocess.run(["git", "clone", "-q", str(origin), str(fresh.root)], check=True, env=env())
    failed = imgpipe(fresh, "diff", "dataset@v1.0.0", "dataset@v1.1.0", check=False, home=home)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "neither in the local cache nor on the default remote" in failed.stderr
    # ...and once both versions are pushed, the same report from the remote.
    subprocess.run([sys.executable, "-m", "dvc", "push", "-q", "-T"], cwd=clone.root, check=True,
                   env=dict(env(), HOME=str(home)))
    again = json.loads(imgpipe(fresh, "diff", "dataset@v1.0.0", "dataset@v1.1.0", "--json", home=home).stdout)
    assert again == report

    # A dataset version fetched with its images: `dataset` + `dataset-images` of the same version.
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    for name in ("dataset", "dataset-images"):
        subprocess.run([sys.executable, "-m", "dvc", "artifacts", "get", str(origin), name, "--rev", "v1.1.0",
                        "-o", name], cwd=consumer, check=True, env=dict(env(), HOME=str(home)), capture_output=True)
    dataset = pd.read_parquet(consumer / "dataset/dataset.parquet")
    pixels = gather(consumer / "dataset-images", dataset["shard"].to_numpy(), dataset["shard_offset"].to_numpy())
    assert [hashlib.sha256(p.tobytes()).hexdigest() for p in pixels] == dataset["pixel_sha256"].tolist()


def test_an_hf_export_read_back_as_the_source_gives_the_same_validated_dataset(reproduced_once, tmp_path):
    export = tmp_path / "hf"
    # --params: the shared project is only read; the CLI runs from elsewhere
    imgpipe(Clone(tmp_path), "export", "--format", "hf", "--out", str(export),
            "--params", str(reproduced_once.root / "params.yaml"))
    # The export is the digits: its own auto rule cannot tell an hf export of handwriting from photos,
    # so the crop-duplicate pass (off for `digits`) is set off as it was for the first project.
    second = make_clone(tmp_path / "second", {"download.source": f"hf:{export}",
                                              "validate.near_duplicates.max_crop": 0})
    second.dvc("repro", "validate")

    columns = ["item_id", "source_path", "label", "label_index", "split", "pixel_sha256"]

    def validated(clone: Clone) -> pd.DataFrame:
        df = pd.read_parquet(clone.root / "data/validated/dataset.parquet", columns=columns)
        return df.astype(str).sort_values("item_id").reset_index(drop=True)

    before, after = validated(reproduced_once), validated(second)
    assert len(after) == len(before) > 1000
    pd.testing.assert_frame_equal(after, before)  # ids, labels, splits and pixels: equal, not just counted
    classes = json.loads((second.root / "data/labels/classes.json").read_text())["classes"]
    assert classes == json.loads((reproduced_once.root / "data/labels/classes.json").read_text())["classes"]
