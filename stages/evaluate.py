"""Stage 7, evaluate: test-split accuracy, macro precision/recall/F1, per-class report, confusion plot."""

from imgpipe import params
from imgpipe.stage import run_stage

EVAL_METRICS = "metrics/eval.json"
PER_CLASS = "metrics/per_class.json"
PREDICTIONS = "metrics/predictions.csv"


def main() -> None:
    def body() -> dict:
        from imgpipe.evaluate import confusion_rows, score
        from imgpipe.io import atomic_file, write_json
        from imgpipe.train import load_checkpoint, load_split, predict_logits

        paths = params.load("paths", params.PathsParams)
        cfg = params.load("evaluate", params.EvaluateParams)
        model, checkpoint = load_checkpoint(paths.model)
        test = load_split(paths.augmented, "test")
        y_pred = predict_logits(model, test.x, cfg.batch_size).argmax(1).numpy()
        headline, per_class = score(test.y, y_pred, checkpoint["classes"])
        write_json(EVAL_METRICS, headline)
        write_json(PER_CLASS, per_class)
        with atomic_file(PREDICTIONS) as tmp:
            confusion_rows(test.y, y_pred, checkpoint["classes"]).to_csv(tmp, index=False, lineterminator="\n")
        worst = sorted(per_class.items(), key=lambda kv: kv[1]["f1-score"])[:3]
        return {
            **headline,
            "weakest classes (f1)": ", ".join(f"{name} {m['f1-score']:.3f}" for name, m in worst),
        }

    run_stage("evaluate", body)


if __name__ == "__main__":
    main()
