"""Near duplicates that survive crops, rescales and colour shifts: today's pass (aligned 7x7
colour embedding, shifts up to 2 px, similarity 0.98) against the second pass
(:mod:`imgpipe.validate.crop_duplicates`) and their union (what the check runs), in one run.

    nice python benchmarks/bench_duplicates.py [--data ../shared/data/cifar10-train.tar.gz]
        [--planted-base 5000] [--per-kind 50] [--skip-planted] [--skip-full] [--fixed-split 10000]
        [--out /tmp/bench_duplicates]

1. Planted copies: ``--per-kind`` copies per transform of distinct real photographs, mixed into
   ``--planted-base`` real photographs: recall per transform of each method, and the pairs each
   finds among the base photographs (the false-pair rate on unrelated images; a few of those are
   CIFAR-10's own duplicates, see the contact sheet).
2. The real 50,000 CIFAR-10 training images as they are: pairs, groups and the training images a
   "keep one per group" policy removes (the proxy of the ciFAIR budget: at most 1,000 removed),
   the wall and CPU time of each pass at 50,000, and a contact sheet of a sample of the pairs only
   the second pass finds (``new_pairs_sample.png``) to judge by eye.
3. With ``--fixed-split 10000``: the removal count on fixed splits (the ciFAIR proxy: the CIFAR-10
   test set is not on this machine). The 50,000 images as a source whose own split holds a seeded
   random 10,000 as test, through the duplicates check with the default params (crop pass on, and
   off): the training images removed as copies of test images (``leakage``), the cross-split pairs
   each pass finds, and a contact sheet of cross-split pairs only the crop pass finds
   (``fixed_split_crop_only_pairs.png``).

Without the archive it falls back to generated textured images (figures then mean little).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from _project import PROJECT as ROOT
from PIL import Image, ImageEnhance

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "validate"))  # planted.py: generated textured images


def load_images(archive: Path) -> tuple[np.ndarray, str, list[str]]:
    """Images in name order, where they came from, and their names (`<class>/<NNNN>.jpg`)."""
    if not archive.exists():
        from planted import textured_images

        return (textured_images(20000, seed=0), "generated textured images (the CIFAR-10 archive is missing)",
                [f"class{i % 10}/{i:05d}.png" for i in range(20000)])
    names, images = [], []
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith((".jpg", ".png")):
                names.append(member.name)
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB")))
    order = np.argsort(names)
    return np.stack(images)[order], str(archive), [names[i] for i in order]


# -- the transforms ------------------------------------------------------------------------------
def crop(img, frac, rng):
    h, w = img.shape[:2]
    t, b, left, r = rng.uniform(0, frac, 4)  # each side on its own
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC, box=(left * w, t * h, w - r * w, h - b * h)))


def rescale(img, rng):
    h, w = img.shape[:2]
    s = int(rng.integers(14, 22))
    return np.asarray(Image.fromarray(img).resize((s, s), Image.BICUBIC).resize((w, h), Image.BICUBIC))


def _enhance(img, kind, factor):
    return np.asarray(getattr(ImageEnhance, kind)(Image.fromarray(img)).enhance(factor))


def _either(rng, low, high):  # a factor below or above 1
    return rng.uniform(*low) if rng.random() < 0.5 else rng.uniform(*high)


def bright(img, rng):
    return _enhance(img, "Brightness", _either(rng, (0.7, 0.85), (1.15, 1.3)))


def contrast(img, rng):
    return _enhance(img, "Contrast", _either(rng, (0.6, 0.8), (1.25, 1.5)))


def saturation(img, rng):
    return _enhance(img, "Color", _either(rng, (0.4, 0.7), (1.3, 1.7)))


def hue(img, rng):
    hsv = np.asarray(Image.fromarray(img).convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(rng.choice([-1, 1]) * rng.integers(6, 13))) % 256  # 8-18 deg
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


def jpeg(img, rng, quality=50):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def shift(img, rng):
    h, w = img.shape[:2]
    dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
    p = np.pad(img, ((abs(dy),) * 2, (abs(dx),) * 2, (0, 0)), mode="edge")
    return p[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w].copy()


def colour(img, rng):
    return hue(saturation(contrast(bright(img, rng), rng), rng), rng)


KINDS = {
    "shift": shift, "jpeg": jpeg, "resize": rescale, "bright": bright,  # today's planted kinds
    "crop10": lambda im, r: crop(im, 0.1, r), "crop20": lambda im, r: crop(im, 0.2, r),
    "contrast": contrast, "saturation": saturation, "hue": hue,
    "crop20+colour": lambda im, r: colour(crop(im, 0.2, r), r),
    "crop10+rescale+jpeg": lambda im, r: jpeg(rescale(crop(im, 0.1, r), r), r),
    "crop20+bright+jpeg": lambda im, r: jpeg(bright(crop(im, 0.2, r), r), r),
}


# -- the methods ---------------------------------------------------------------------------------
def methods(cfg):
    from imgpipe.validate.crop_duplicates import effective_max_crop, pairs_from
    from imgpipe.validate.duplicates import near_duplicate_pairs

    nd = cfg.near_duplicates
    return {
        "today": lambda x: near_duplicate_pairs(x, nd.threshold, nd.max_shift, nd.tables, nd.bits, seed=cfg.seed),
        "crop": lambda x: pairs_from(x, chunk=8192, threshold=nd.crop_threshold, max_crop=effective_max_crop(nd),
                                     seed=cfg.seed),
    }


def as_set(frame) -> set[tuple[int, int]]:
    return set(zip(frame["a"].tolist(), frame["b"].tolist(), strict=True))


def timed(fn, x):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(x)
    return out, round(time.perf_counter() - wall, 1), round(time.process_time() - cpu, 1)


def removed(n: int, pairs: set[tuple[int, int]]) -> tuple[int, int]:
    """(groups, images a keep-one-per-group policy removes)."""
    from imgpipe.validate.duplicates import component_groups

    if not pairs:
        return 0, 0
    a, b = (np.array(v) for v in zip(*sorted(pairs), strict=True))
    groups = component_groups(n, a, b)
    members = int((groups >= 0).sum())
    count = len(np.unique(groups[groups >= 0]))
    return count, members - count


def contact_sheet(images: np.ndarray, pairs: list[tuple[int, int, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 6  # pairs per row, two tiles each
    rows = max(1, -(-len(pairs) // cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (a, b, s) in enumerate(pairs):
        r, c = divmod(k, cols)
        axes[r, 2 * c].imshow(images[a], interpolation="nearest")
        axes[r, 2 * c + 1].imshow(images[b], interpolation="nearest")
        axes[r, 2 * c].set_title(f"{a}", fontsize=6)
        axes[r, 2 * c + 1].set_title(f"{b} {s:.3f}", fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- 3. the removal count on fixed splits ------------------------------------------------------------
def fixed_split(images: np.ndarray, names: list[str], n_test: int, cfg, out: Path) -> dict:
    """The proxy of the ciFAIR budget: a source whose own split holds ``n_test`` seeded random
    images as test (as a source lays them out: ``test/<class>/...`` beside ``train/<class>/...``),
    through the duplicates check as the validate stage runs it (same rows, same code, defaults):
    the training images it removes because they duplicate a test image (``leakage``), with the
    crop pass on and off, and the cross-split pairs each pass finds."""
    import hashlib

    import pandas as pd

    from imgpipe.validate.checks.duplicates import DuplicatesCheck
    from imgpipe.validate.crop_duplicates import crop_duplicate_pairs, effective_max_crop
    from imgpipe.validate.duplicates import component_groups, exact_groups, near_duplicate_pairs

    n = len(images)
    test = np.zeros(n, bool)
    test[np.random.default_rng(0).choice(n, min(n_test, n - 1), replace=False)] = True
    split = np.where(test, "test", "train")
    labels = [name.split("/")[-2] for name in names]
    classes = sorted(set(labels))
    ids = [f"{s}/{'/'.join(name.split('/')[-2:])}" for s, name in zip(split, names, strict=True)]
    rows = pd.DataFrame({"item_id": ids, "source_path": ids, "label": labels,
                         "label_index": [classes.index(c) for c in labels], "source_split": split,
                         "pixel_sha256": [hashlib.sha256(im.tobytes()).hexdigest() for im in images]})
    nd = cfg.near_duplicates
    # What DuplicatesCheck.run does, with each pass's pairs kept apart to count them.
    exact = exact_groups(rows["pixel_sha256"])
    reps = np.nonzero((exact < 0) | (exact == np.arange(n)))[0]
    timing = {}
    cpu = time.process_time()
    first = near_duplicate_pairs(images[reps], nd.threshold, nd.max_shift, nd.tables, nd.bits, seed=cfg.seed)
    timing["first_pass_cpu_s"] = round(time.process_time() - cpu, 1)
    cpu = time.process_time()
    crop = crop_duplicate_pairs(images[reps], nd.crop_threshold, effective_max_crop(nd), seed=cfg.seed)
    timing["crop_pass_cpu_s"] = round(time.process_time() - cpu, 1)
    passes = {name: (reps[p["a"].to_numpy()], reps[p["b"].to_numpy()], p["similarity"].to_numpy(np.float64))
              for name, p in (("first", first), ("crop", crop))}
    figures: dict = {"images": n, "test": int(test.sum()), "train": int((~test).sum()), **timing}
    for name, (a, b, _) in passes.items():
        cross = test[a] != test[b]
        figures[f"{name}_pass_pairs"] = int(len(a))
        figures[f"{name}_pass_cross_split_pairs"] = int(cross.sum())
        train_side = np.where(test[a[cross]], b[cross], a[cross])
        figures[f"{name}_pass_train_images_in_cross_pairs"] = int(len(np.unique(train_side)))
    first_keys = set(zip(*passes["first"][:2], strict=True))
    crop_only = [(int(x), int(y), float(s)) for x, y, s in zip(*passes["crop"], strict=True)
                 if (x, y) not in first_keys and test[x] != test[y]]
    figures["crop_only_cross_split_pairs"] = len(crop_only)
    for variant, used in (("crop_off", ("first",)), ("crop_on", ("first", "crop"))):
        a = np.concatenate([passes[p][0] for p in used])
        b = np.concatenate([passes[p][1] for p in used])
        sims = np.concatenate([passes[p][2] for p in used])
        exact_a = np.nonzero(exact >= 0)[0]
        groups = component_groups(n, np.concatenate([a, exact_a]), np.concatenate([b, exact[exact_a]]))
        best = np.zeros(n)
        np.maximum.at(best, a, sims)
        np.maximum.at(best, b, sims)
        findings, counters = DuplicatesCheck._decide(rows, exact, groups, best, cfg)
        leaked = findings[findings["check"] == "leakage"]
        figures[variant] = {"train_removed_as_copies_of_test": int(counters["leakage_removed"]),
                            "groups_with_test_and_train": int(findings.loc[findings["check"] == "leakage",
                                                                          "group_id"].nunique()),
                            "train_images_flagged_as_near_duplicates": int(
                                ((findings["check"] == "near_duplicate") & (findings["decision"] != "kept")
                                 & findings["item_id"].str.startswith("train/")).sum()),
                            "removed_ids_sample": leaked["item_id"].head(3).tolist()}
    sample = [crop_only[i] for i in np.sort(np.random.default_rng(2).choice(len(crop_only), min(48, len(crop_only)),
                                                                          replace=False))] if crop_only else []
    contact_sheet(images, [(a, b, s) if test[b] else (b, a, s) for a, b, s in sample],
                  out / "fixed_split_crop_only_pairs.png",
                  "cross-split pairs only the crop pass finds: training image, then its test partner")
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = next((p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared")
    ap.add_argument("--data", type=Path, default=shared / "data" / "cifar10-train.tar.gz")
    ap.add_argument("--planted-base", type=int, default=5000)
    ap.add_argument("--per-kind", type=int, default=50)
    ap.add_argument("--skip-full", action="store_true", help="planted copies only (no 50,000-image run)")
    ap.add_argument("--skip-planted", action="store_true", help="no planted copies")
    ap.add_argument("--fixed-split", type=int, default=0, metavar="TEST",
                    help="also: the source fixes TEST seeded random images as its test split (10000 for the ciFAIR proxy)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_duplicates"))
    args = ap.parse_args()
    from imgpipe.params.validate import ValidateParams

    args.out.mkdir(parents=True, exist_ok=True)
    images, source, names = load_images(args.data)
    cfg = ValidateParams()
    run = methods(cfg)
    figures: dict = {"source": source, "load_avg_start": Path("/proc/loadavg").read_text().split()[:3],
                     "crop_params": {"max_crop": cfg.near_duplicates.max_crop,
                                     "crop_threshold": cfg.near_duplicates.crop_threshold}}

    # 1. planted copies --------------------------------------------------------------------------
    if not args.skip_planted:
        rng = np.random.default_rng(0)
        n_base = min(args.planted_base, len(images) - 1)
        base = images[np.sort(rng.choice(len(images), n_base, replace=False))]
        kinds = [k for k in KINDS for _ in range(args.per_kind)]
        sources = np.arange(len(kinds)) % n_base
        copies = np.stack([KINDS[k](base[s], rng) for k, s in zip(kinds, sources, strict=True)])
        mixed = np.concatenate([base, copies])
        truth = [(int(s), n_base + i) for i, s in enumerate(sources)]
        found = {}
        for name, fn in run.items():
            pairs, wall, cpu = timed(fn, mixed)
            found[name] = as_set(pairs)
            figures[f"planted_{name}_s"] = {"wall": wall, "cpu": cpu}
        found["union"] = found["today"] | found["crop"]
        n_unrelated = n_base * (n_base - 1) // 2
        for name, got in found.items():
            hits = [t in got for t in truth]
            figures[f"planted_{name}_recall"] = round(float(np.mean(hits)), 3)
            figures[f"planted_{name}_recall_per_kind"] = {
                k: round(float(np.mean([h for h, kk in zip(hits, kinds, strict=True) if kk == k])), 3) for k in KINDS}
            base_pairs = sum(1 for a, b in got if b < n_base)
            figures[f"planted_{name}_pairs_among_base"] = base_pairs
            figures[f"planted_{name}_false_pair_rate"] = float(f"{base_pairs / n_unrelated:.3g}")
        figures["planted_today_pairs_kept_by_union"] = round(len(found["today"] & found["union"]) / max(len(found["today"]), 1), 4)
        only_base = sorted((a, b) for a, b in found["crop"] - found["today"] if b < n_base)
        contact_sheet(mixed, [(a, b, 0.0) for a, b in only_base[:36]], args.out / "planted_base_pairs_crop_only.png",
                      f"pairs among {n_base} base photographs found only by the second pass")

    # 2. the real 50,000 as they are ---------------------------------------------------------------
    if not args.skip_full:
        real = {}
        for name, fn in run.items():
            pairs, wall, cpu = timed(fn, images)
            real[name] = pairs
            figures[f"full_{name}_s"] = {"wall": wall, "cpu": cpu}
        sets = {name: as_set(p) for name, p in real.items()}
        sets["union"] = sets["today"] | sets["crop"]
        figures["full_images"] = len(images)
        for name, got in sets.items():
            groups, gone = removed(len(images), got)
            figures[f"full_{name}"] = {"pairs": len(got), "groups": groups, "removed_keep_one_per_group": gone}
        sims = {(a, b): s for a, b, s in real["crop"].itertuples(index=False)}
        new_only = sorted(sets["crop"] - sets["today"])
        figures["full_crop_only_pairs"] = len(new_only)
        sample = [new_only[i] for i in np.sort(np.random.default_rng(1).choice(len(new_only), min(48, len(new_only)),
                                                                              replace=False))] if new_only else []
        contact_sheet(images, [(a, b, sims[(a, b)]) for a, b in sample], args.out / "new_pairs_sample.png",
                      "a random sample of the pairs only the second pass finds (50,000 CIFAR-10 training images)")
        real["crop"].to_parquet(args.out / "full_crop_pairs.parquet")
        real["today"].to_parquet(args.out / "full_today_pairs.parquet")
    if args.fixed_split:
        figures["fixed_split"] = fixed_split(images, names, args.fixed_split, cfg, args.out)
    figures["load_avg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2))
    for key, value in figures.items():
        print(f"{key:42s} {value}")
    print(f"contact sheets and pairs: {args.out}")


if __name__ == "__main__":
    main()
