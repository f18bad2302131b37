"""Generated images for the crop pass's golden test: unrelated textured images, copies of some
of them cropped (up to 22% per side), recoloured, rescaled and re-encoded at random strengths
(some found, some just below the threshold), and a crowd of eight look-alikes (dropped by the
crowd filter). ``GOLDEN`` holds the pairs the pass gave on them when it kept every thumbnail
(revision 327e9bb), recorded once; the bounded-memory pass must give the same bytes."""

from __future__ import annotations

import numpy as np

from planted import cropped, enhanced, hue_turned, reencoded, resized, shifted, textured_images


def golden_images() -> np.ndarray:
    base = textured_images(96, seed=21)
    rng = np.random.default_rng(5)
    copies = []
    for k in range(40):
        im, sides = base[k], tuple(float(v) for v in rng.uniform(0, 0.22, 4))
        kind = k % 5
        if kind == 0:
            copy = cropped(im, sides)
        elif kind == 1:
            copy = enhanced(cropped(im, sides), "Contrast", float(rng.uniform(0.6, 1.5)))
        elif kind == 2:
            copy = hue_turned(enhanced(im, "Color", float(rng.uniform(0.4, 1.7))), int(rng.integers(-12, 13)))
        elif kind == 3:
            copy = reencoded(resized(cropped(im, sides), int(rng.integers(14, 22))), 60)
        else:
            copy = shifted(enhanced(im, "Brightness", float(rng.uniform(0.7, 1.3))), 2, -1)
        copies.append(copy)
    crowd = np.clip(base[95].astype(np.int64)[None] + rng.integers(-3, 4, (8, 32, 32, 3)), 0, 255).astype(np.uint8)
    return np.concatenate([base, np.stack(copies), crowd])


GOLDEN: list[tuple[int, int, float]] = [
    (0, 96, 0.9995369911193848), (1, 97, 0.998212993144989), (2, 98, 0.9602100253105164), (3, 99, 0.9898290038108826),
    (4, 100, 0.9632949829101562), (5, 101, 0.9993270039558411), (6, 102, 0.9989590048789978), (7, 103, 0.9785090088844299),
    (8, 104, 0.987430989742279), (9, 105, 0.96697998046875), (10, 106, 0.9989740252494812), (11, 107, 0.9984189867973328),
    (12, 108, 0.9719840288162231), (13, 109, 0.9846420288085938), (14, 110, 0.9624500274658203), (15, 111, 0.9970279932022095),
    (16, 112, 0.9983230233192444), (17, 113, 0.9850940108299255), (18, 114, 0.9808639883995056), (20, 116, 0.9985340237617493),
    (21, 117, 0.9987589716911316), (22, 118, 0.9996070265769958), (23, 119, 0.9859859943389893), (24, 120, 0.9713870286941528),
    (25, 121, 0.9998480081558228), (26, 122, 0.9985560178756714), (27, 123, 0.9939029812812805), (28, 124, 0.9828739762306213),
    (29, 125, 0.9646160006523132), (30, 126, 0.9981380105018616), (31, 127, 0.9982870221138), (32, 128, 0.9998760223388672),
    (33, 129, 0.9843720197677612), (35, 131, 0.9993739724159241), (37, 133, 0.994799017906189), (38, 134, 0.9891790151596069),
    (39, 135, 0.9656239748001099),
]
