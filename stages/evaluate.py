"""Stage 7, evaluate: test-split accuracy, macro precision/recall/F1, per-class report, confusion plot."""

from imgpipe.params.base import load
from imgpipe.params.evaluate import EvaluateParams
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe import contracts as c
        from imgpipe.evaluate.metrics import prediction_rows, score
        from imgpipe.inference import load_checkpoint, predict_logits
        from imgpipe.io import atomic_file, write_json

        paths = load("paths", PathsParams)
        cfg = load("evaluate", EvaluateParams)
        model, checkpoint = load_checkpoint(paths.model)
        test = c.load_split(paths.augmented, "test")
        items = c.load_items(paths.augmented, "test")
        y_pred = predict_logits(model, test.x, cfg.batch_size, bf16=checkpoint.get("bf16", False),
                                tta=checkpoint.get("tta", False)).argmax(1).numpy()
        headline, per_class = score(test.y, y_pred, checkpoint["classes"])
        write_json(c.EVAL_METRICS, headline)
        write_json(c.PER_CLASS_METRICS, per_class)
        with atomic_file(c.PREDICTIONS_FILE) as tmp:
            rows = prediction_rows(items, test.y, y_pred, checkpoint["classes"])
            rows.to_csv(tmp, index=False, lineterminator="\n")
        worst = sorted(per_class.items(), key=lambda kv: kv[1]["f1-score"])[:3]
        return {
            **headline,
            "weakest classes (f1)": ", ".join(f"{name} {m['f1-score']:.3f}" for name, m in worst),
        }

    run_stage("evaluate", body)


if __name__ == "__main__":
    main()
