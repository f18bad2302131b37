"""Suspected training-label errors seen through the real network: K-fold cross-validation.

The validate stage's probe (``imgpipe.validate.label_issues``) ranks suspects with a cheap
feature model; the evaluate stage ranks the test split's suspects with the trained network. This
module gives the training images (train, and val with ``crossval.include_val``) the network's
view too: the images are dealt into K folds (stratified by class, by a seeded hash of each item
id, so the draw never depends on row order; an image's augmented copies go with it), K models of
``train.model`` are trained with the training recipe (``imgpipe.train.loop.fit``, the trainer's own
loop) at ``crossval.width`` / ``crossval.epochs``, and each predicts the fold it never saw. On those
out-of-sample probabilities at most ``max_flag_fraction`` of the images are listed, least
self-confident first, among the candidates ``crossval.rank_by`` names (:func:`rank_suspects`: every
image the network puts in another class, or only those cleanlab's filter keeps, as
``imgpipe.evaluate.label_errors`` lists the test split's).

The split is read only through ``imgpipe.storedsplit.load_split`` / ``load_items`` (the trainer's
readers), never from augment's files directly, and by row, batch by batch: the pixels of the
whole split are never in memory at once.

Outputs (``metrics/crossval/``): ``label_errors.csv`` (ranked suspects), ``probabilities.parquet``
(every image's out-of-sample probabilities and its fold), ``plots/label_errors.png`` (contact
sheet), and ``metrics/crossval.json`` (counts; ``dvc exp show`` shows them).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from imgpipe.errors import PipelineError
from imgpipe.params.crossval import CrossvalParams

log = logging.getLogger("imgpipe")

CROSSVAL_DIR = Path("metrics/crossval")
METRICS_FILE = Path("metrics/crossval.json")
LABEL_ERRORS_FILE = CROSSVAL_DIR / "label_errors.csv"
PROBABILITIES_FILE = CROSSVAL_DIR / "probabilities.parquet"
PLOTS_DIR = CROSSVAL_DIR / "plots"
SHEET_FILE = "label_errors.png"
OUTPUTS = (METRICS_FILE, CROSSVAL_DIR)
CHECK = "train_label_error"  # the review check these suspects carry
# evaluate's label-error columns, then where the image came from and which fold predicted it
PROB_PREFIX = "p_"
RANK_BY = get_args(CrossvalParams.model_fields["rank_by"].annotation)  # which images may be listed (rank_suspects)


def error_columns() -> list[str]:
    from imgpipe.evaluate.label_errors import COLUMNS

    return [*COLUMNS, "split", "fold"]


def _hash_draws(item_ids, seed: int) -> np.ndarray:
    key = str(int(seed)).encode() + b"\0"
    return np.array([int.from_bytes(hashlib.blake2b(key + str(i).encode(), digest_size=8).digest(), "big")
                     for i in item_ids], dtype=np.uint64)


def assign_folds(item_ids, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per item: within each class the items, ordered by a seeded hash of their id, are
    dealt round robin (so every fold holds its share of every class, and an item's fold depends
    on the ids and the seed, not on the row order)."""
    ids = np.asarray([str(i) for i in item_ids], dtype=object)
    labels = np.asarray(labels)
    draws = _hash_draws(ids, seed)
    out = np.zeros(len(ids), dtype=np.int64)
    start = 0
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        order = rows[np.lexsort((ids[rows], draws[rows]))]
        out[order] = (start + np.arange(len(order))) % folds
        start += len(order)  # the next class starts where this one stopped: fold sizes stay even
    return out


def load_training_rows(augmented: Path, include_val: bool):
    """``(x, y, items)`` of the train split (and val): every row, augmented copies included.
    ``x`` is a :class:`imgpipe.storedsplit.StoredImages` over both splits: it reads pixels by row
    from the stores when asked (nothing is read here), so memory does not grow with image size x
    count (as the trainer reads). ``items`` has ``item_id``, ``source_path``, ``copy`` and ``split``."""
    from imgpipe.contracts import COPY, load_items
    from imgpipe.storedsplit import load_split

    xs, ys, frames = [], [], []
    for split in ("train", "val") if include_val else ("train",):
        arrays = load_split(augmented, split)
        items = load_items(augmented, split)
        if len(items) != len(arrays.y):
            raise PipelineError(f"{augmented}: {split} has {len(arrays.y)} images but {len(items)} item rows; "
                                "run `dvc repro augment`")
        if COPY not in items:
            items = items.assign(**{COPY: 0})
        xs.append(arrays.x)
        ys.append(np.asarray(arrays.y, dtype=np.int64))
        frames.append(items[["item_id", "source_path", COPY]].assign(split=split))
    return concat_stored(xs), np.concatenate(ys), pd.concat(frames, ignore_index=True)


def concat_stored(parts):
    """The train and val splits as one lazy view (:meth:`StoredImages.concat`)."""
    from imgpipe.storedsplit import StoredImages

    try:
        return StoredImages.concat(parts)
    except ValueError:
        raise PipelineError("crossval: the train and val splits are not read from the same image stores; "
                            "run `dvc repro augment`") from None


def take_rows(x, rows: np.ndarray):
    """Rows of ``x``: a lazy view of a stored split (read batch by batch by whoever consumes it), or
    an in-memory gather of an array."""
    rows = np.asarray(rows, dtype=np.int64)
    return x.subset(rows) if hasattr(x, "subset") else x[rows]


def fold_config(train_cfg, cfg, fold: int):
    """The training recipe of one fold model: ``train``'s, with crossval's width, epochs and seed."""
    from imgpipe.train.recipes import resolve_recipe

    seed = int(np.random.default_rng([cfg.seed, fold]).integers(2**31))
    update = {"epochs": cfg.epochs, "seed": seed, "early_stopping_patience": 0}
    if cfg.width:
        update["width"] = cfg.width
    return resolve_recipe(train_cfg).model_copy(update=update)


def out_of_fold_probabilities(x, y: np.ndarray, folds: np.ndarray, predict: np.ndarray, meta: dict,
                              norm: dict, train_cfg, cfg, download_cfg=None) -> tuple[np.ndarray, list[dict]]:
    """Train one model per fold on the other folds; return ``(probabilities of the rows in
    ``predict`` from the fold model that never saw them, per-fold records)``. ``x``: a stored split
    (read by row, batch by batch, in ``train.decode_workers`` processes for an encoded store) or
    an in-memory array; the probabilities are the same bytes either way."""
    import torch

    from imgpipe import torchenv
    from imgpipe.contracts import SplitArrays
    from imgpipe.inference import make_model, predict_logits
    from imgpipe.storedsplit import resolve_workers
    from imgpipe.train.loop import fit
    from imgpipe.train.trainer import load_pretrained, model_options

    device = torchenv.choose_device()
    torchenv.configure(train_cfg.threads, cfg.seed, device)
    amp, precision = torchenv.mixed_precision(device, train_cfg.bf16)
    flip = bool(meta.get("hflip", False))
    probs = np.zeros((len(y), len(meta["classes"])), dtype=np.float32)
    records = []
    for k in range(cfg.folds):
        started = time.perf_counter()
        fold_cfg = fold_config(train_cfg, cfg, k)
        fit_rows = np.flatnonzero(folds != k)
        held = np.flatnonzero((folds == k) & predict)
        if not len(held):
            continue
        if len(np.unique(y[fit_rows])) < 2:
            raise PipelineError(f"crossval: fold {k + 1}/{cfg.folds} trains on fewer than 2 classes; "
                                "lower crossval.folds or add images")
        torch.manual_seed(fold_cfg.seed)
        try:
            model = make_model(fold_cfg.model, meta, norm, model_options(fold_cfg))
        except ValueError as exc:
            raise PipelineError(f"train.model={fold_cfg.model}: {exc}") from None
        if fold_cfg.pretrained:
            load_pretrained(model, fold_cfg, download_cfg)
        model = model.to(device)
        # fit reports a val accuracy per epoch: a slice of the held-out fold keeps that cheap
        monitor = held[:256]
        state = fit(model, SplitArrays(take_rows(x, fit_rows), y[fit_rows]),
                    SplitArrays(take_rows(x, monitor), y[monitor]), fold_cfg, flip=flip, device=device)
        logits = predict_logits(model, take_rows(x, held), 512, bf16=amp, tta=flip and fold_cfg.tta,
                                workers=resolve_workers(fold_cfg.decode_workers, x))
        probs[held] = torch.softmax(logits.float(), 1).numpy()
        accuracy = float((probs[held].argmax(1) == y[held]).mean())
        seconds = time.perf_counter() - started
        records.append({"fold": k, "trained_on": int(len(fit_rows)), "predicted": int(len(held)),
                        "accuracy": round(accuracy, 4), "seconds": round(seconds, 1), "precision": precision,
                        "train_acc": state.history[-1]["train/acc"] if state.history else None})
        log.info("crossval: fold %d/%d  trained on %d, predicted %d: accuracy %.4f  %.1fs",
                 k + 1, cfg.folds, len(fit_rows), len(held), accuracy, seconds)
    return probs, records


def rank_suspects(labels: np.ndarray, probs: np.ndarray, rank_by: str) -> np.ndarray:
    """Row positions of the suspects, least self-confident (lowest probability of the given label)
    first, ties by row. ``cleanlab``: only the rows cleanlab's filter keeps (as evaluate lists the
    test split's); ``self_confidence``: every row whose given label is not the network's first
    choice (the list's length is then set by the cap alone)."""
    from imgpipe.evaluate.label_errors import rank_label_errors

    labels = np.asarray(labels, dtype=np.int64)
    if rank_by == "cleanlab":
        return rank_label_errors(labels, probs)
    if rank_by != "self_confidence":
        raise ValueError(f"crossval.rank_by={rank_by!r}: expected one of {', '.join(RANK_BY)}")
    rows = np.flatnonzero(np.asarray(probs).argmax(axis=1) != labels) if len(labels) else np.zeros(0, np.int64)
    return rows[np.lexsort((rows, probs[rows, labels[rows]]))]


def suspects_table(items: pd.DataFrame, labels: np.ndarray, probs: np.ndarray, classes, folds: np.ndarray,
                   max_flag_fraction: float, rank_by: str) -> tuple[pd.DataFrame, int]:
    """The ranked list of :func:`rank_suspects` on the out-of-sample probabilities, capped at
    ``max_flag_fraction`` of the images, and how many suspects there were before the cap."""
    from imgpipe.evaluate.label_errors import label_error_table

    rows = rank_suspects(labels, probs, rank_by)
    cap = int(np.floor(max_flag_fraction * len(labels)))
    table = label_error_table(items, labels, probs, classes, rows=rows[:cap])
    where = dict(zip(items["item_id"].astype(str), zip(items["split"].astype(str), folds, strict=True), strict=True))
    table = table.assign(split=[where[i][0] for i in table["item_id"]],
                         fold=np.array([where[i][1] for i in table["item_id"]], dtype=np.int64))
    return table[error_columns()].reset_index(drop=True), len(rows)


def probabilities_frame(items: pd.DataFrame, labels: np.ndarray, probs: np.ndarray, classes,
                        folds: np.ndarray) -> pd.DataFrame:
    names = np.asarray(list(classes), dtype=object)
    frame = pd.DataFrame({
        "item_id": items["item_id"].astype(str).to_numpy(),
        "source_path": items["source_path"].astype(str).to_numpy(),
        "split": items["split"].astype(str).to_numpy(),
        "fold": np.asarray(folds, dtype=np.int64),
        "label": names[labels].astype(str) if len(labels) else np.zeros(0, dtype=str),
    })
    for j, name in enumerate(classes):
        frame[f"{PROB_PREFIX}{name}"] = np.asarray(probs[:, j], dtype=np.float32)
    return frame


def sheet_png(table: pd.DataFrame, images, items: pd.DataFrame, path: Path, folds: int) -> None:
    """The contact sheet (evaluate's, in crossval's words): the top suspects, captioned with the
    given and the network's label; ``images`` (an array or a stored split) has ``items``' rows."""
    from imgpipe.evaluate.label_errors import label_errors_png

    label_errors_png(table, images, items, path,
                     title=f"Suspected training-label errors ({{shown}} of {{total}} shown; {folds}-fold network)",
                     empty="crossval is off or found no suspected label errors")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    from imgpipe.io import atomic_file

    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def crossval_label_errors(augmented: Path, cfg, train_cfg, download_cfg=None) -> dict:
    """The stage: write every output (empty ones when ``cfg.enabled`` is off); return its summary."""
    from imgpipe.contracts import COPY, load_augmented_meta
    from imgpipe.io import atomic_dir, write_json, write_parquet

    meta, norm = load_augmented_meta(augmented)
    classes = list(meta["classes"])
    if not cfg.enabled:
        empty = pd.DataFrame({"item_id": [], "source_path": [], "split": []}, dtype=str)
        write_csv(pd.DataFrame(columns=error_columns()), LABEL_ERRORS_FILE)
        write_parquet(probabilities_frame(empty, np.zeros(0, dtype=np.int64), np.zeros((0, len(classes))), classes,
                                          np.zeros(0, dtype=np.int64)), PROBABILITIES_FILE)
        with atomic_dir(PLOTS_DIR) as tmp:
            sheet_png(pd.DataFrame(columns=error_columns()), [], empty, tmp / SHEET_FILE, cfg.folds)
        write_json(METRICS_FILE, {"enabled": False, "suspected_label_errors": 0})
        return {"enabled": "false (crossval.enabled): empty outputs written"}

    x, y, items = load_training_rows(augmented, cfg.include_val)
    original = items[COPY].to_numpy() == 0
    ids = items["item_id"].astype(str).to_numpy()
    # an augmented copy goes with its original: it never trains the model that predicts the original
    fold_of = dict(zip(ids[original], assign_folds(ids[original], y[original], cfg.folds, cfg.seed), strict=True))
    folds = np.array([fold_of.get(i, -1) for i in ids], dtype=np.int64)
    if (folds < 0).any():
        raise PipelineError(f"{augmented}: augmented copies of items that are not in the split "
                            f"({int((folds < 0).sum())} rows); run `dvc repro augment`")
    if original.sum() < cfg.folds:
        raise PipelineError(f"crossval: {int(original.sum())} training images for {cfg.folds} folds; "
                            "lower crossval.folds or add images")
    started = time.perf_counter()
    probs, records = out_of_fold_probabilities(x, y, folds, original, meta, norm, train_cfg, cfg, download_cfg)
    seconds = time.perf_counter() - started
    rows = np.flatnonzero(original)
    o_items, o_y, o_probs, o_folds = items.iloc[rows].reset_index(drop=True), y[rows], probs[rows], folds[rows]
    table, found = suspects_table(o_items, o_y, o_probs, classes, o_folds, cfg.max_flag_fraction, cfg.rank_by)
    # cleanlab's count of suspect labels: an estimate of how many are wrong, whichever list is written
    cleanlab_found = found if cfg.rank_by == "cleanlab" else len(rank_suspects(o_y, o_probs, "cleanlab"))
    accuracy = float((o_probs.argmax(1) == o_y).mean()) if len(o_y) else 0.0
    write_csv(table, LABEL_ERRORS_FILE)
    write_parquet(probabilities_frame(o_items, o_y, o_probs, classes, o_folds), PROBABILITIES_FILE)
    with atomic_dir(PLOTS_DIR) as tmp:
        sheet_png(table, take_rows(x, rows), o_items, tmp / SHEET_FILE, cfg.folds)
    fold_cfg = fold_config(train_cfg, cfg, 0)
    write_json(METRICS_FILE, {
        "enabled": True, "folds": cfg.folds, "images": int(len(o_y)),
        "splits": "train+val" if cfg.include_val else "train",
        "oos_accuracy": round(accuracy, 4), "rank_by": cfg.rank_by, "suspected_label_errors": int(len(table)),
        "found_before_cap": int(found), "cleanlab_found": int(cleanlab_found),
    })
    candidates = (f"cleanlab found {found}" if cfg.rank_by == "cleanlab" else
                  f"the network puts {found} in another class; cleanlab estimates {cleanlab_found} wrong labels")
    kept = (f"{len(table)} listed, least self-confident first (rank_by {cfg.rank_by}: {candidates}; cap "
            f"{cfg.max_flag_fraction:g} of the images)")
    return {
        "images": f"{len(o_y)} ({'train+val' if cfg.include_val else 'train'}; {len(items) - len(o_y)} augmented "
                  "copies trained on, not predicted)",
        "models": f"{cfg.folds} x {fold_cfg.model} (width {fold_cfg.width}, {fold_cfg.epochs} epochs, "
                  f"{records[0]['precision'] if records else '-'}) in {seconds:.1f}s",
        "out_of_sample_accuracy": f"{accuracy:.4f} (per fold: {', '.join(str(r['accuracy']) for r in records)})",
        "suspected_label_errors": f"{kept} -> {LABEL_ERRORS_FILE}",
    }


def review_rows(table: pd.DataFrame) -> pd.DataFrame:
    """``metrics/crossval/label_errors.csv`` as review findings (check ``train_label_error``,
    decision ``flagged``), for ``imgpipe review``."""
    from imgpipe.evaluate.label_errors import review_rows as eval_rows

    rows = eval_rows(table)
    if rows.empty:
        return rows
    folds = table["fold"].astype(int).to_numpy() + 1 if "fold" in table else np.zeros(len(table), dtype=int)
    return rows.assign(check=CHECK, detail=[f"cross-validated network (fold {f}): {d.split(': ', 1)[1]}"
                                            for f, d in zip(folds, rows["detail"], strict=True)])


def crossval_review_rows(path: Path | None = None) -> pd.DataFrame | None:
    """The crossval stage's list (``path``, default ``LABEL_ERRORS_FILE`` when it exists) as review
    rows; None when there is none. A path given but missing is an error."""
    csv = Path(path) if path is not None else LABEL_ERRORS_FILE
    if not csv.is_file():
        if path is not None:
            raise PipelineError(f"{csv}: not found; run `dvc repro crossval` (with crossval.enabled: true) first")
        return None
    try:
        table = pd.read_csv(csv, dtype={"item_id": str, "source_path": str, "label": str, "suggested_label": str},
                            keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise PipelineError(f"{csv}: not a label-error list written by the crossval stage: {exc}") from None
    missing = [c for c in ("item_id", "source_path", "label", "suggested_label", "label_score", "suggested_score")
               if c not in table]
    if missing:
        raise PipelineError(f"{csv}: not a label-error list written by the crossval stage (no column "
                            f"{', '.join(missing)})")
    return review_rows(table)
