"""The evaluate stage's logic: score the model on the test split and draw what a person reads.

Writes (names in :mod:`imgpipe.contracts`):
- ``metrics/eval.json``: the headline figures only (accuracy, macro and weighted P/R/F1, top-5
  accuracy beyond 5 classes, ECE, test image count), so ``dvc exp show`` stays readable;
- ``metrics/eval/per_class.csv``: precision, recall, F1 and support per class;
- ``metrics/eval/predictions.csv``: one row per test image (item id, source path, actual,
  predicted, confidence), the data of the confusion plots;
- ``metrics/eval/reliability.csv``: the reliability-diagram bins;
- ``metrics/eval/label_errors.csv``: suspected test-label errors (see :mod:`imgpipe.evaluate.label_errors`);
- ``metrics/eval/per_class_report.csv`` and ``.md``: per class, worst first, the network's confusion
  joined with the card's per-class table (see :mod:`imgpipe.evaluate.per_class`);
- ``metrics/eval/plots/*.png``: every figure as an image (see :mod:`imgpipe.evaluate.plots`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from imgpipe import contracts as c
from imgpipe.errors import PipelineError
from imgpipe.evaluate.calibration import reliability_table
from imgpipe.evaluate.gallery import captions, most_confidently_wrong
from imgpipe.evaluate.label_errors import label_error_table, label_errors_png
from imgpipe.evaluate.metrics import confusion_matrix, prediction_rows, score, softmax
from imgpipe.evaluate.per_class import write_per_class_report
from imgpipe.io import atomic_dir, atomic_file, write_json
from imgpipe.params.evaluate import EvaluateParams
from imgpipe.perclass import PER_CLASS_CSV


def _csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def evaluate_model(model_path: Path, augmented_dir: Path, cfg: EvaluateParams,
                   preprocessed_dir: Path | None = None, card_dir: Path | None = None) -> dict:
    """Score, write every output, and return the stage summary. The test images are read where
    augment's index points (``preprocessed_dir``, default: the one augment read). ``card_dir``: the
    dataset card, whose per-class table the per-class report joins (None: the model side only)."""
    from imgpipe.evaluate import plots
    from imgpipe.inference import inference_options, load_checkpoint, predict_logits
    from imgpipe.storedsplit import load_split, resolve_workers

    model, checkpoint = load_checkpoint(model_path)
    classes = list(checkpoint["classes"])
    test = load_split(augmented_dir, "test", preprocessed_dir)
    items = c.load_items(augmented_dir, "test")
    if len(items) != len(test.y):
        raise PipelineError(f"{augmented_dir / c.split_items_file('test')}: {len(items)} rows for "
                              f"{len(test.y)} test images; rebuild it with `dvc repro -f augment`")
    if not len(test.y):
        raise PipelineError(f"{augmented_dir / c.split_items_file('test')}: the test split is empty; "
                              "raise validate.test_fraction or add images")
    options = inference_options(checkpoint, cfg.tta)
    tta = options["tta"]
    workers = resolve_workers(cfg.decode_workers, test.x)
    probs = softmax(predict_logits(model, test.x, cfg.batch_size, workers=workers, **options).numpy())
    headline, table = score(test.y, probs, classes, cfg.ece_bins)
    errors = label_error_table(items, test.y, probs, classes)  # confident learning on the test split
    headline["suspected_label_errors"] = len(errors)
    write_json(c.EVAL_METRICS, headline)
    c.EVAL_DIR.mkdir(parents=True, exist_ok=True)
    _csv(table, c.PER_CLASS_METRICS)
    _csv(prediction_rows(items, test.y, probs, classes), c.PREDICTIONS_FILE)
    reliability = reliability_table(probs.max(1), probs.argmax(1) == test.y, cfg.ece_bins)
    # Only bins that hold images: an empty bin has no accuracy to draw.
    _csv(reliability[reliability["count"] > 0].round(6), c.RELIABILITY_FILE)
    _csv(errors, c.LABEL_ERRORS_FILE)
    cm = confusion_matrix(test.y, probs.argmax(1), len(classes))
    wrong = most_confidently_wrong(test.y, probs, cfg.gallery_size)
    with atomic_dir(c.EVAL_PLOTS_DIR) as tmp:
        plots.confusion_png(cm, classes, tmp / plots.FILES["confusion"])
        plots.confusion_png(cm, classes, tmp / plots.FILES["confusion_normalized"], normalized=True)
        plots.per_class_png(table, tmp / plots.FILES["per_class"])
        plots.reliability_png(reliability, headline["ece"], tmp / plots.FILES["reliability"])
        plots.gallery_png([np.asarray(test.x[i]) for i in wrong], captions(wrong, items, test.y, probs, classes),
                          tmp / plots.FILES["gallery"],
                          f"Most confidently wrong test images ({len(wrong)} of {int((probs.argmax(1) != test.y).sum())} wrong)")
        label_errors_png(errors, test.x, items, tmp / plots.FILES["label_errors"])
        per_class_summary = write_per_class_report(  # issue 21: per class, worst first, with the data side
            table, cm, errors, card_dir and Path(card_dir) / PER_CLASS_CSV, c.PER_CLASS_REPORT, c.PER_CLASS_REPORT_MD,
            tmp / plots.FILES["per_class_report"])
    worst = table.sort_values(["f1", "class"]).head(3)
    return {
        **headline,
        "tta": tta,
        "weakest classes (f1)": ", ".join(f"{r['class']} {r['f1']:.3f}" for _, r in worst.iterrows()),
        **per_class_summary,
        "plots": str(c.EVAL_PLOTS_DIR),
    }
