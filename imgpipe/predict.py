"""``imgpipe predict``: run the trained model on new images; write a CSV or Label Studio tasks.

PATH may be an image, a folder (searched recursively for image files), an archive (.tar, .tar.gz,
.zip: extracted with the download stage's safe extraction into a temporary folder), or a text
file (``.txt``/``.lst``/``.list``) listing one image path per line (relative to the list's folder;
blank lines and ``#`` comments ignored). Images are decoded with the preprocess stage's own
function (:func:`imgpipe.preprocess.decode.to_model_pixels`) under the preprocess params, so a
picture gives the model exactly the pixels it would get in the pipeline. A file that does not
decode becomes a row with an ``error``, not a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgpipe.errors import PipelineError

log = logging.getLogger("imgpipe")

LIST_SUFFIXES = {".txt", ".lst", ".list"}
ORDERS = ("margin", "entropy")
DEFAULT_MODEL = "models/model.pt"
PREDICTION_COLUMNS = ("path", "label", "confidence", "error")  # then one prob_<class> per class
PROB_PREFIX = "prob_"
EXTRACT_MAX_BYTES = 16 << 30
EXTRACT_MAX_MEMBERS = 2_000_000


@dataclass(frozen=True)
class Input:
    path: str  # as a person names it (archive members as <archive>/<member>)
    file: Path | None  # where the bytes are; None when the listed file does not exist


@dataclass
class Prediction:
    path: str
    probs: np.ndarray | None  # None for an error row
    error: str = ""


# ------------------------------------------------------------------------------------- inputs


def _image_suffixes() -> set[str]:
    from imgpipe.rawdata import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in _image_suffixes()


def _folder_images(folder: Path) -> list[Path]:
    found = [p for p in folder.rglob("*") if p.is_file() and _is_image_name(p)
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _from_folder(folder: Path, shown: str) -> list[Input]:
    images = _folder_images(folder)
    if not images:
        wanted = ", ".join(sorted(_image_suffixes()))
        raise PipelineError(f"{shown}: no images in this folder (looked for {wanted})")
    return [Input(f"{shown.rstrip('/')}/{p.relative_to(folder).as_posix()}", p) for p in images]


def _from_archive(archive: Path, shown: str, scratch: Path) -> list[Input]:
    from imgpipe.download.extract import Budget, extract_archive

    dest = Path(tempfile.mkdtemp(dir=scratch))
    extract_archive(archive, dest, Budget(shown, EXTRACT_MAX_BYTES, EXTRACT_MAX_MEMBERS))
    images = _folder_images(dest)
    if not images:
        raise PipelineError(f"{shown}: no images in this archive")
    return [Input(f"{shown}/{p.relative_to(dest).as_posix()}", p) for p in images]


def _from_list(listing: Path, shown: str) -> list[Input]:
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise PipelineError(f"{shown}: not a text file listing images (not UTF-8)") from None
    out = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        file = Path(entry) if Path(entry).is_absolute() else listing.parent / entry
        if file.is_dir():
            out += _from_folder(file, entry)
        else:
            out.append(Input(entry, file if file.is_file() else None))
    if not out:
        raise PipelineError(f"{shown}: lists no images")
    return out


def collect_inputs(paths: Sequence[str], scratch: Path) -> list[Input]:
    """Every image the PATH arguments name, in argument order, each folder sorted."""
    from imgpipe.download.extract import archive_type

    inputs: list[Input] = []
    for shown in paths:
        path = Path(shown)
        if path.is_dir():
            inputs += _from_folder(path, shown)
        elif not path.exists():
            raise PipelineError(f"{shown}: no such file or folder")
        elif _is_image_name(path):
            inputs.append(Input(shown, path))
        elif path.suffix.lower() in LIST_SUFFIXES:
            inputs += _from_list(path, shown)
        elif archive_type(path):
            inputs += _from_archive(path, shown, scratch)
        else:
            inputs.append(Input(shown, path))  # maybe an image with an odd name; decoding decides
    return inputs


# ------------------------------------------------------------------------------------- model


def load_model(path: str):
    """``(model, checkpoint)``; a missing or foreign file is one line that says what to do."""
    from imgpipe.inference import load_checkpoint

    if not Path(path).is_file():
        where = "" if Path(path).is_absolute() else f" ({Path(path).resolve()}, from {Path.cwd()})"
        raise PipelineError(f"{path}: no such model{where}; train one with `dvc repro train` (or fetch it with "
                            f"`dvc pull {path}`), or name another with --model")
    return load_checkpoint(path)


def model_version(path: str, checkpoint: dict) -> str:
    """``<arch>-<first 12 hex of the file's sha256>``: which weights proposed a label."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{checkpoint.get('arch', 'model')}-{digest.hexdigest()[:12]}"


def check_classes(checkpoint: dict, model_path: str, classes_file: str | None) -> None:
    """The model must predict the project's frozen classes, in their order, or its labels would
    not import back through the labels stage."""
    if not classes_file:
        return
    from imgpipe.contracts import read_json_output

    data = read_json_output(classes_file, "labels")
    expected = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(expected, list):
        raise PipelineError(f"{classes_file}: expected {{\"classes\": [names...]}}")
    got = list(checkpoint["classes"])
    if got != expected:
        extra = [c for c in got if c not in expected]
        missing = [c for c in expected if c not in got]
        if extra or missing:
            what = "; ".join(part for part in (
                f"the model has {', '.join(map(repr, extra[:3]))}" if extra else "",
                f"lacks {', '.join(map(repr, missing[:3]))}" if missing else "") if part)
        else:
            what = "same names in another order"
        raise PipelineError(
            f"{model_path}: its {len(got)} classes do not match the {len(expected)} of {classes_file} ({what}); "
            "retrain with `dvc repro train`, or pass --model for a matching model or --classes none")


def preprocess_config(checkpoint: dict, params_file: Path):
    """The preprocess params the model's images were made with: the checkpoint's own record if it
    has one, else ``params.yaml``'s preprocess section (when present), with mode and size always
    taken from the checkpoint."""
    from imgpipe.params.base import load
    from imgpipe.params.preprocess import PreprocessParams

    recorded = checkpoint.get("preprocess")
    if isinstance(recorded, dict):
        cfg = PreprocessParams.model_validate(recorded)
        if params_file.is_file():
            current_cfg = load("preprocess", PreprocessParams, params_file)
            current, mine = current_cfg.model_input_record(), cfg.model_input_record()
            differ = [f"{k} {current[k]!r} (model: {mine[k]!r})" for k in recorded if current.get(k) != mine.get(k)]
            if differ:
                log.warning("imgpipe predict: %s says preprocess %s; using the model's record, as its "
                            "training images were made", params_file, ", ".join(differ))
    elif params_file.is_file():
        cfg = load("preprocess", PreprocessParams, params_file)
    else:
        cfg = PreprocessParams()
    mode = "L" if int(checkpoint["channels"]) == 1 else "RGB"
    return cfg.model_copy(update={"mode": mode, "size": tuple(checkpoint["image_size"])})


# ------------------------------------------------------------------------------------- predict


def _decode(item: Input, cfg) -> tuple[np.ndarray | None, str]:
    import warnings

    from PIL import Image

    from imgpipe.preprocess.decode import Reject, to_model_pixels
    from imgpipe.preprocess.shards import as_stored

    if item.file is None:
        return None, "no such file"
    try:
        data = item.file.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    try:
        with warnings.catch_warnings():
            # preprocess.max_pixels rejects large images with its own `too_large` line; Pillow's
            # warning about the same image would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # A jpeg store's model trained on JPEG-decoded pixels: give it the same (lossless: as is).
            return as_stored(to_model_pixels(data, cfg), cfg.resolved_store, cfg.jpeg_quality), ""
    except Reject as exc:
        return None, str(exc)


def predict_inputs(model, inputs: Sequence[Input], cfg, batch_size: int, tta: bool = False,
                   progress: bool = True, bf16: bool = False) -> Iterator[Prediction]:
    """Predictions in input order, decoded and run ``batch_size`` images at a time."""
    from tqdm import tqdm

    from imgpipe.evaluate.metrics import softmax
    from imgpipe.inference import predict_logits

    with tqdm(total=len(inputs), unit="img", desc="predict", disable=None if progress else True) as bar:
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            decoded = [_decode(item, cfg) for item in chunk]
            good = [pixels for pixels, _ in decoded if pixels is not None]
            probs = iter(())
            if good:
                logits = predict_logits(model, np.stack(good), batch_size, bf16=bf16, tta=tta).numpy()
                probs = iter(softmax(logits))
            for item, (pixels, error) in zip(chunk, decoded, strict=True):
                yield Prediction(item.path, next(probs) if pixels is not None else None, error)
            bar.update(len(chunk))


def uncertainty_order(preds: Sequence[Prediction], order: str) -> list[int]:
    """Indices of the decoded predictions, most uncertain first: smallest margin between the two
    most probable classes, or highest entropy; ties keep input order."""
    idx = [i for i, p in enumerate(preds) if p.probs is not None]
    if not idx:
        return []
    probs = np.stack([preds[i].probs for i in idx])
    if order == "margin":
        top = -np.sort(-probs, axis=1)
        key = top[:, 0] - (top[:, 1] if probs.shape[1] > 1 else 0.0)
    elif order == "entropy":
        key = (probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)  # negative entropy: low = uncertain
    else:
        raise PipelineError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}")
    return [idx[j] for j in np.argsort(key, kind="stable")]


# ------------------------------------------------------------------------------------- outputs


def predictions_frame(preds: Sequence[Prediction], classes: Sequence[str]):
    import pandas as pd

    rows = []
    for p in preds:
        if p.probs is None:
            rows.append([p.path, "", None, p.error, *([None] * len(classes))])
        else:
            k = int(p.probs.argmax())
            rows.append([p.path, classes[k], float(p.probs[k]), "", *map(float, p.probs)])
    columns = [*PREDICTION_COLUMNS, *(f"{PROB_PREFIX}{c}" for c in classes)]
    return pd.DataFrame(rows, columns=columns)


def write_csv(path: str, preds: Sequence[Prediction], classes: Sequence[str]) -> None:
    from imgpipe.io import atomic_file

    frame = predictions_frame(preds, classes)
    with atomic_file(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")


def write_label_studio(path: str, preds: Sequence[Prediction], classes: Sequence[str], order: str,
                       version: str, image_prefix: str = "") -> int:
    from imgpipe.labelstudio.write import TaskProposal, write_tasks

    proposals = []
    for i in uncertainty_order(preds, order):
        p = preds[i]
        k = int(p.probs.argmax())
        proposals.append(TaskProposal(image=image_prefix + p.path, label=classes[k], score=float(p.probs[k])))
    return write_tasks(path, proposals, version)


# ------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="an image, a folder, an archive (.tar, .tar.gz, .zip) or a .txt file listing images")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the checkpoint (default {DEFAULT_MODEL})")
    parser.add_argument("--out", help="write one CSV row per image: path, label, confidence, error, "
                        "prob_<class>... (default predictions.csv unless --label-studio is given)")
    parser.add_argument("--label-studio", metavar="TASKS_JSON",
                        help="write a Label Studio import file: one task per image, the model's label as a prediction")
    parser.add_argument("--label-config", metavar="CONFIG_XML",
                        help="write the matching Label Studio labelling config (one Choices over the classes)")
    parser.add_argument("--order", choices=ORDERS, default="margin",
                        help="task order, most uncertain first: smallest top-2 margin, or highest entropy")
    parser.add_argument("--image-prefix", default="",
                        help="prepended to each task's image path, e.g. /data/local-files/?d= for Label "
                        "Studio local storage")
    parser.add_argument("--classes", default="auto", metavar="CLASSES_JSON",
                        help="refuse a model whose classes differ from this class list (default: the "
                        "labels stage's output when present; 'none' to skip)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default evaluate.batch_size)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="average with the mirrored image (default evaluate.tta)")


def _evaluate_defaults(params_file: Path) -> tuple[int, bool | str]:
    from imgpipe.params.base import load
    from imgpipe.params.evaluate import EvaluateParams

    cfg = load("evaluate", EvaluateParams, params_file) if params_file.is_file() else EvaluateParams()
    return cfg.batch_size, cfg.tta


def _classes_file(arg: str, params_file: Path) -> str | None:
    if arg == "none":
        return None
    if arg != "auto":
        return arg
    from imgpipe.contracts import CLASSES_FILE
    from imgpipe.params.base import load
    from imgpipe.params.paths import PathsParams

    paths = load("paths", PathsParams, params_file) if params_file.is_file() else PathsParams()
    found = Path(paths.labels) / CLASSES_FILE
    return str(found) if found.is_file() else None


def run(args: argparse.Namespace) -> int:
    from imgpipe.params.base import PARAMS_FILE

    out = args.out or (None if args.label_studio else "predictions.csv")
    batch_size, tta = _evaluate_defaults(PARAMS_FILE)
    batch_size = args.batch_size or batch_size
    tta = tta if args.tta is None else args.tta
    if batch_size < 1:
        raise PipelineError("--batch-size must be at least 1")
    model, checkpoint = load_model(args.model)
    from imgpipe.inference import inference_options

    options = inference_options(checkpoint, tta)  # exactly what the evaluate stage uses
    check_classes(checkpoint, args.model, _classes_file(args.classes, PARAMS_FILE))
    classes = list(checkpoint["classes"])
    cfg = preprocess_config(checkpoint, PARAMS_FILE)
    with tempfile.TemporaryDirectory(prefix="imgpipe-predict-") as scratch:
        inputs = collect_inputs(args.paths, Path(scratch))
        preds = list(predict_inputs(model, inputs, cfg, batch_size, options["tta"], bf16=options["bf16"]))
    failed = [p for p in preds if p.probs is None]
    if out:
        write_csv(out, preds, classes)
    if args.label_studio:
        n = write_label_studio(args.label_studio, preds, classes, args.order,
                               model_version(args.model, checkpoint), args.image_prefix)
        log.info("%s: %d Label Studio tasks, most uncertain (%s) first", args.label_studio, n, args.order)
    if args.label_config:
        from imgpipe.labelstudio.write import write_label_config

        write_label_config(args.label_config, classes)
    done = len(preds) - len(failed)
    log.info("predicted %d of %d images%s", done, len(preds), f" -> {out}" if out else "")
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more; see the error column)" if len(failed) > 1 else ""
        print(f"imgpipe predict: {len(failed)} of {len(preds)} images could not be read: "
              f"{first.path}: {first.error}{more}", file=sys.stderr)
    return 0 if done else 1
