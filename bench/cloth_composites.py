"""Real pods on cloth, composited: a stand-in for the acceptance's "pods photographed on cloth".

No real photograph of okra on cloth is at hand, so this cuts the pods out of the four
white-background photographs of ``../shared/data/real-okra`` (with their approximate masks)
and lays them, rotated and scaled, on textiles drawn here: plain dyed cloth, stripes and
gingham in any colour (a third of them dark or muted), with soft folds and a contact shadow.
The textiles are this file's own, not the renderer's (``okrainsight.synth``), so a model does not
score well merely because it was trained on the same backgrounds. Pixels are real pods; the
edges and lighting are not a photograph's, so read the figure as a sign, next to the real
white-background IoU.

Deterministic: composite ``k`` of photo ``i`` uses seed ``7000 + 100 i + k``. Nothing is
written to disk; the photographs are read in place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from okrainsight.synth.cutouts import load_cutouts


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    px = np.uint8([[[int(h / 2) % 180, int(255 * s), int(255 * v)]]])
    return cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255


def textile(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cloth backdrop: ``(h, w, 3)`` float32 RGB in 0..1."""
    dark = rng.random() < 0.35
    c1 = _hsv(
        rng.uniform(0, 360),
        rng.uniform(0.05, 0.8),
        rng.uniform(0.15, 0.45) if dark else rng.uniform(0.45, 0.95),
    )
    c2 = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.4), rng.uniform(0.6, 1.0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    a = xx * np.cos(ang) + yy * np.sin(ang)
    b = -xx * np.sin(ang) + yy * np.cos(ang)
    period = rng.uniform(10, 50)
    kind = rng.integers(0, 3)
    if kind == 0:
        t = np.zeros_like(xx)
    elif kind == 1:
        t = (np.cos(a * 2 * np.pi / period) > 0.3).astype(np.float32)
    else:
        t = ((np.cos(a * 2 * np.pi / period) > 0) + (np.cos(b * 2 * np.pi / period) > 0)).astype(
            np.float32
        ) / 2
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    grain = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 0.6)
    folds = cv2.resize(rng.random((3, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img * (0.92 + 0.1 * grain + 0.25 * (folds - 0.5))[..., None], 0, 1)


def lay_pod(
    crop: np.ndarray,
    alpha: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    backdrop: Callable[[], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Lay a cut-out (``crop`` float RGB 0..1, ``alpha`` 0..1) on ``backdrop()`` (``(H, W, 3)``
    float 0..1, ``size`` = (W, H); called after the pose is drawn from ``rng``, so composites
    repeat those made before this function existed): rotated up to 40 degrees, scaled to 30-95%
    of the frame, near the middle, with a soft contact shadow and a 0.7-pixel feathered edge.
    Returns (uint8 RGB image, bool truth)."""
    w, h = size
    s = rng.uniform(0.3, 0.95) * min(w / crop.shape[1], h / crop.shape[0])
    M = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), rng.uniform(-40, 40), s)
    M[:, 2] += [
        w / 2 - crop.shape[1] / 2 + rng.uniform(-0.1, 0.1) * w,
        h / 2 - crop.shape[0] / 2 + rng.uniform(-0.1, 0.1) * h,
    ]
    pod = cv2.warpAffine(crop, M, (w, h))
    a = cv2.warpAffine(alpha, M, (w, h))
    shadow = cv2.GaussianBlur(np.roll(a, (5, 5), (0, 1)), (0, 0), 6)
    soft = cv2.GaussianBlur(a, (0, 0), 0.7)[..., None]
    comp = backdrop() * (1 - 0.4 * shadow)[..., None] * (1 - soft) + pod * soft
    return (np.clip(comp, 0, 1) * 255).round().astype(np.uint8), a > 0.5


def composites(
    okra_dir: Path, per_photo: int = 8, size: tuple[int, int] = (640, 480)
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(photo stem, image (H, W, 3) uint8 RGB, truth (H, W) bool)]``; empty without ``okra_dir/masks``."""
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    if not (okra_dir / "masks").is_dir():
        return out
    w, h = size
    for i, cut in enumerate(load_cutouts(okra_dir, max_side=None)):  # photos without a mask: skipped
        for k in range(per_photo):
            rng = np.random.default_rng(7000 + 100 * i + k)
            image, truth = lay_pod(cut.rgb, cut.alpha, size, rng, lambda r=rng: textile(r, h, w))
            out.append((cut.source, image, truth))
    return out
