"""Images that belong to no class: recall of the `ood` check on digits planted into CIFAR-10.

    nice python benchmarks/bench_ood.py [--data ../shared/data/cifar10-dev.tar.gz] [--plant 500 100]

The CIFAR-10 sample (10,000 photographs; ``cifar10-train.tar.gz`` for all 50,000) plus ``--plant``
scikit-learn digits (8x8, upscaled to 32x32 RGB with the preprocess stage's resampling) under
random CIFAR labels. For each plant size it runs the check as the validate stage would (a
``CheckContext``, its default params, the budget at 1% of the images) and, on the same
embedding, the baseline a k-nearest-neighbour distance gives (k=10, brute force), and prints:
time, how many were flagged, recall of the planted images at 1% flagged, and the precision of
the flags. Note that with 500 planted among 10,000 (4.8%) a 1% budget can hold at most 21% of
them; planting 1% (100 in 10,000, or 500 in 50,000) is the issue's setting.

Without the archive it falls back to generated colour fields (figures then mean little).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from _project import PROJECT as ROOT

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "validate"))  # planted.py: the generated fallback


def load_archive(path: Path) -> np.ndarray:
    from PIL import Image

    with tarfile.open(path) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")), key=lambda m: m.name)
        return np.stack([np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")) for m in members])


def digits(n: int, seed: int) -> np.ndarray:
    from PIL import Image
    from sklearn.datasets import load_digits

    from imgpipe.preprocess.decode import RESAMPLE

    d = load_digits().images
    pick = np.random.default_rng(seed).choice(len(d), n, replace=n > len(d))
    small = (d[pick] * 255 / 16).round().astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(x).resize((32, 32), RESAMPLE)) for x in small])
    return np.repeat(big[..., None], 3, axis=3)


def knn_scores(features: np.ndarray, k: int = 10, chunk: int = 2048) -> np.ndarray:
    """Distance to the k-th nearest other image (brute force, float64)."""
    sq = (features ** 2).sum(1)
    out = np.empty(len(features))
    for s in range(0, len(features), chunk):
        d = sq[s:s + chunk, None] + sq[None, :] - 2 * features[s:s + chunk] @ features.T
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        out[s:s + chunk] = np.sqrt(np.maximum(np.partition(d, k - 1, axis=1)[:, k - 1], 0))
    return out


def main() -> None:
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from imgpipe.params.validate import OodParams, ValidateParams
    from imgpipe.validate.checks.base import CheckContext
    from imgpipe.validate.checks.ood import OodCheck, pooled

    ap = argparse.ArgumentParser()
    # ../shared beside the project (a worktree one level deeper: ../../shared)
    shared = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
                  ROOT.parent / "shared" / "data")
    ap.add_argument("--data", type=Path, default=shared / "cifar10-dev.tar.gz")
    ap.add_argument("--plant", type=int, nargs="+", default=[500, 100])
    args = ap.parse_args()
    if args.data.is_file():
        t = time.perf_counter()
        base = load_archive(args.data)
        print(f"{args.data.name}: {len(base)} photographs, loaded in {time.perf_counter() - t:.1f} s")
    else:
        from planted import smooth_images

        base = smooth_images(5000, seed=0)
        print(f"{args.data} not found: {len(base)} generated colour fields instead")
    for plant in args.plant:
        images = np.concatenate([base, digits(plant, seed=plant)])
        n = len(images)
        planted = np.zeros(n, bool)
        planted[len(base):] = True
        rng = np.random.default_rng(0)
        rows = pd.DataFrame({"item_id": [f"img/{i:05d}" for i in range(n)], "source_path": "",
                             "label": rng.integers(0, 10, n).astype(str)})
        budget = int(0.01 * n)
        ceiling = min(budget, plant) / plant
        with threadpool_limits(limits=2):
            for name, p_value in (("default cut (p=0.001)", 0.001), ("no cut (budget only)", 0.999999)):
                ctx = CheckContext(rows=rows, classes=[str(c) for c in range(10)],
                                   cfg=ValidateParams(ood=OodParams(max_p_value=p_value)),
                                   pixel_loader=lambda pos, images=images: images[pos])
                t = time.perf_counter()
                found = OodCheck().run(ctx).findings
                took = time.perf_counter() - t
                hit = planted[[int(i[4:]) for i in found["item_id"]]].sum()
                print(f"ood check, {name}: {plant} planted in {n}: flagged {len(found)} (budget {budget}), "
                      f"recall {hit / plant:.3f} (ceiling {ceiling:.3f}), precision "
                      f"{hit / max(len(found), 1):.3f}, {took:.1f} s")
            t = time.perf_counter()
            feats = pooled(images, 8)
            feats = feats - feats.mean(0)
            _, sv, vt = np.linalg.svd(feats, full_matrices=False)
            proj = feats @ vt[:16].T / sv[:16]
            top = np.argsort(-knn_scores(proj), kind="stable")[:budget]
            took = time.perf_counter() - t
            hit = planted[top].sum()
            print(f"baseline kNN distance (k=10, same embedding, whitened): recall {hit / plant:.3f}, precision "
                  f"{hit / budget:.3f}, {took:.1f} s")


if __name__ == "__main__":
    main()
