"""Real pods among real green vegetables, composited: a stand-in for pods photographed among
leaves (on the plant, in a market crate next to beans and peppers).

The pods of the four white-background photographs of ``../shared/data/real-okra`` (cut out along
their approximate masks) are laid, rotated and scaled as in :mod:`cloth_composites`, on random
crops of the **held-out** real green vegetables of ``../shared/data/real-negatives`` (the
even-numbered files: peas, broccoli, lettuce, beans, leek, spinach, peppers, chillies), which no
training recipe here uses. The pod has to be found against surroundings of its own colour while
the vegetables around it stay not-okra; the IoU scores both. The pixels are real; the edges and
lighting are not a photograph's, so read the figure as a sign.

Deterministic: composite ``k`` of pod photo ``i`` uses seed ``9000 + 100 i + k`` and backdrop
``i * per_photo + k`` (cycling through the sorted held-out photos). Nothing is written to disk.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from cloth_composites import lay_pod

from okrainsight.imageio import iter_image_files, read_image
from okrainsight.synth.cutouts import load_cutouts


def photo_number(name: str) -> int | None:
    """The leading number of a file name like ``02_peas.jpg`` (2), or None."""
    m = re.match(r"(\d+)_", name)
    return int(m.group(1)) if m else None


def held_out_backdrops(negatives_dir: Path) -> list[Path]:
    """The even-numbered photographs of ``negatives_dir`` (``02_peas.jpg`` ...), sorted."""
    numbered = ((p, photo_number(p.name)) for p in iter_image_files([negatives_dir]))
    return sorted(p for p, n in numbered if n is not None and n % 2 == 0)


def _crop(photo: np.ndarray, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A random crop of ``photo`` (60-100% of the largest of aspect ``w:h``), resized to (h, w), 0..1."""
    ph, pw = photo.shape[:2]
    frac = rng.uniform(0.6, 1.0)
    cw = max(1, int(min(pw, ph * w / h) * frac))
    ch = max(1, int(cw * h / w))
    x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    return (
        cv2.resize(photo[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        / 255
    )


def green_composites(
    okra_dir: Path, negatives_dir: Path, per_photo: int = 8, size: tuple[int, int] = (640, 480)
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(pod photo stem, image (H, W, 3) uint8 RGB, truth (H, W) bool)]``; empty when either
    folder is missing."""
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    if not (okra_dir / "masks").is_dir() or not negatives_dir.is_dir():
        return out
    backdrops = [read_image(p) for p in held_out_backdrops(negatives_dir)]
    if not backdrops:
        return out
    w, h = size
    for i, cut in enumerate(load_cutouts(okra_dir, max_side=None)):
        for k in range(per_photo):
            rng = np.random.default_rng(9000 + 100 * i + k)
            backdrop = _crop(backdrops[(i * per_photo + k) % len(backdrops)], rng, w, h)
            image, truth = lay_pod(cut.rgb, cut.alpha, size, rng, lambda b=backdrop: b)
            out.append((cut.source, image, truth))
    return out
