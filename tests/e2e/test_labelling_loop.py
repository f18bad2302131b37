"""The semi-automatic labelling loop, end to end, as the README walks it (real dvc CLI, real
`imgpipe predict`): a trained model pre-annotates unlabelled images for Label Studio, a person
accepts some, corrects some and skips some, the export comes back through `labels.path`, and
`dvc repro` retrains on it. Corrected labels win; skipped and untouched tasks stay unlabelled.
Also checks that `imgpipe predict` on the test images gives exactly the labels evaluate recorded.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import copy_clone

pytestmark = pytest.mark.e2e

INCOMING = 200  # unlabelled digits that "arrive"


def _imgpipe(clone, *args, check=True):
    return clone.run(sys.executable, "-m", "imgpipe.cli", *args, check=check)


def _write_digits(dest: Path) -> list[str]:
    from imgpipe.download.builtin import write_digits

    write_digits(dest)
    return sorted(p.relative_to(dest).as_posix() for p in (dest / "images").glob("*.png"))


def _annotation(task_id: int, label: str | None, who: str, cancelled: bool = False) -> dict:
    result = [] if label is None else [{
        "id": f"r{task_id}", "type": "choices", "from_name": "choice", "to_name": "image",
        "value": {"choices": [label]},
    }]
    return {"id": 1000 + task_id, "completed_by": who, "result": result, "was_cancelled": cancelled,
            "ground_truth": False, "lead_time": 1.5}


def _stages_in_status(output: str) -> set[str]:
    return {line[:-1] for line in output.splitlines() if line and not line[0].isspace() and line.endswith(":")}


def test_labelling_loop(reproduced_once, tmp_path):
    clone = copy_clone(reproduced_once, tmp_path / "project")
    digits = tmp_path / "digits"
    names = _write_digits(digits)

    # Predict on the test images gives exactly the labels evaluate recorded for them.
    recorded = pd.read_csv(clone.root / "metrics/eval/predictions.csv", dtype=str)
    listing = tmp_path / "test_images.txt"
    listing.write_text("".join(f"{digits / item}\n" for item in recorded["item_id"]))
    _imgpipe(clone, "predict", str(listing), "--out", str(tmp_path / "test_pred.csv"))
    predicted = pd.read_csv(tmp_path / "test_pred.csv", dtype={"label": str})
    assert predicted["error"].isna().all()
    assert predicted["label"].tolist() == recorded["predicted"].tolist()

    # 1. Unlabelled images arrive: a folder without a label file.
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for name in names[:INCOMING]:
        shutil.copy(digits / name, incoming / Path(name).name)
    # 2. The model pre-annotates them, most uncertain first.
    tasks_file, config = tmp_path / "tasks.json", tmp_path / "label_config.xml"
    _imgpipe(clone, "predict", str(incoming), "--label-studio", str(tasks_file), "--label-config", str(config),
             "--out", str(tmp_path / "incoming.csv"))
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == INCOMING
    assert config.read_text().count("<Choice value=") == 10
    probs = pd.read_csv(tmp_path / "incoming.csv").set_index("path").filter(like="prob_")
    top2 = probs.apply(lambda r: sorted(r, reverse=True)[:2], axis=1)
    margins = [top2[t["data"]["image"]][0] - top2[t["data"]["image"]][1] for t in tasks]
    assert all(b >= a - 2e-6 for a, b in zip(margins, margins[1:], strict=False)), "the CSV rounds to 6 digits"
    arch = clone.params()["train"]["model"]
    assert all(t["predictions"][0]["model_version"].startswith(f"{arch}-") for t in tasks)

    # 3. A person accepts most, corrects some, skips some and leaves some untouched; exports JSON.
    outcome = {}
    for i, task in enumerate(tasks):
        name = Path(task["data"]["image"]).name
        proposed = task["predictions"][0]["result"][0]["value"]["choices"][0]
        kind = ("skipped", "untouched", "corrected")[i % 10] if i % 10 < 3 else "accepted"
        if kind == "skipped":
            task["annotations"] = [_annotation(task["id"], None, "ann@example.com", cancelled=True)]
        elif kind == "corrected":
            outcome[name] = str((int(proposed) + 1) % 10)  # always differs from the proposal
            task["annotations"] = [_annotation(task["id"], outcome[name], "ann@example.com")]
        elif kind == "accepted":
            outcome[name] = proposed
            task["annotations"] = [_annotation(task["id"], proposed, "ann@example.com")]
        outcome.setdefault(name, kind)
    export = clone.root / "annotations" / "project-1-export.json"
    export.write_text(json.dumps(tasks))

    # 4. The export under annotations/, labels.path at it, dvc repro retrains.
    model_before = (clone.root / "models/model.pt").read_bytes()
    clone.set_params({"download.source": str(incoming), "labels.path": "annotations/project-1-export.json",
                      "validate.max_quarantine_fraction": 0.3})
    clone.dvc("repro")
    labels = pd.read_parquet(clone.root / "data/labels/labels.parquet").set_index("item_id")["label"]
    issues = pd.read_parquet(clone.root / "data/labels/issues.parquet").set_index("item_id")["problem"]
    for name, want in outcome.items():
        if want in ("skipped", "untouched"):
            assert name not in labels.index, name  # predictions are never ground truth
            # a skipped (cancelled) annotation leaves only the model's prediction: unreviewed
            assert issues[name] == "unreviewed", name
        else:
            assert labels[name] == want, name  # the person's label wins over the model's
    assert (clone.root / "models/model.pt").read_bytes() != model_before

    # A further correction changes the labels stage's inputs only: download and preprocess stay,
    # and DVC reruns validate, augment, train and evaluate after labels as their inputs change.
    recheck = tasks[3]["annotations"][0]["result"][0]["value"]
    recheck["choices"] = [str((int(recheck["choices"][0]) + 1) % 10)]
    export.write_text(json.dumps(tasks))
    assert _stages_in_status(clone.dvc("status").stdout) == {"labels"}
