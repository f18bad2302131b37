"""Stage, card: the dataset card of the validated dataset (Markdown + JSON), a versioned output."""

from imgpipe.params.base import load
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def main() -> None:
    def body() -> dict:
        from imgpipe import contracts as c
        from imgpipe.card import CARD_JSON, CARD_MD, build_card, render_markdown
        from imgpipe.io import atomic_dir, dumps_json
        from imgpipe.privacy.card_section import read_privacy_section

        paths = load("paths", PathsParams)
        card = build_card(
            dataset=c.read_table(paths.validated / c.DATASET_FILE, "validate"),
            quarantine=c.read_table(paths.validated / c.QUARANTINE_FILE, "validate"),
            classes=c.read_classes(paths.labels),
            source=c.read_json_output(paths.raw / c.SOURCE_FILE, "download"),
            quality=c.read_json_output(c.DATA_QUALITY_METRICS, "validate"),
            expectations=c.read_json_output(paths.validated / c.EXPECTATIONS_FILE, "validate"),
            privacy=read_privacy_section(paths.raw, paths.labels, paths.preprocessed),
        )
        with atomic_dir(paths.card) as tmp:
            (tmp / CARD_JSON).write_text(dumps_json(card))
            (tmp / CARD_MD).write_text(render_markdown(card))
        return {
            "images": card["images"],
            "splits": card["split_totals"],
            "content hash": card["content_hash"],
            "card": f"{paths.card / CARD_MD}",
        }

    run_stage("card", body)


if __name__ == "__main__":
    main()
