"""Stage, card: the dataset card of the validated dataset (Markdown + JSON), a versioned output."""

from imgpipe.params.base import load
from imgpipe.params.paths import PathsParams
from imgpipe.stage import run_stage


def card() -> dict:
    from imgpipe import contracts as c
    from imgpipe.card import CARD_JSON, CARD_MD, build_card, dataset_name, render_markdown
    from imgpipe.io import atomic_dir, dumps_json
    from imgpipe.privacy.card_section import read_privacy_section

    paths = load("paths", PathsParams)
    source = c.read_json_output(paths.raw / c.SOURCE_FILE, "download")
    built = build_card(
        dataset=c.read_table(paths.validated / c.DATASET_FILE, "validate"),
        quarantine=c.read_table(paths.validated / c.QUARANTINE_FILE, "validate"),
        classes=c.read_classes(paths.labels),
        source=source,
        quality=c.read_json_output(c.DATA_QUALITY_METRICS, "validate"),
        expectations=c.read_json_output(paths.validated / c.EXPECTATIONS_FILE, "validate"),
        name=dataset_name(source),
        privacy=read_privacy_section(paths.raw, paths.labels, paths.preprocessed),
    )
    with atomic_dir(paths.card) as tmp:
        from imgpipe.boxcard import box_section  # detection labels: box figures
        from imgpipe.perclass import per_class_section  # balance and check findings per class
        from imgpipe.perclass import summary as per_class_summary

        boxes, box_md = box_section(paths.labels, paths.validated, tmp, built["classes"])
        built.update({"boxes": boxes} if boxes else {})
        built["per_class"], per_class_md = per_class_section(paths.labels, paths.validated, tmp, built)
        (tmp / CARD_JSON).write_text(dumps_json(built))
        (tmp / CARD_MD).write_text(render_markdown(built) + per_class_md + box_md)
    return {
        "images": built["images"],
        "splits": built["split_totals"],
        "content hash": built["content_hash"],
        **per_class_summary(built["per_class"]),
        "card": f"{paths.card / CARD_MD}",
    }


def main() -> None:
    run_stage("card", card)


if __name__ == "__main__":
    main()
