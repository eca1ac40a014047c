"""Put a training image's okra on a green surrounding: the ``augment.background`` step.

Pods growing on the plant sit among leaves of their own colour, and the student only sees
pods against green in the few plant renders, so it learns "green shape on a pale table"
rather than ridges, cap and tip (``docs/model-card.md``, Limitations: rendered pods laid on
flat mid green are recalled at 0.29-0.54 against 0.93-0.96 on white). This step changes
everything outside the okra mask and leaves the okra's pixels exactly as they are, in one
of two ways, picked at random:

* ``recolour``: the surrounding keeps its shading and texture (tables, cloth, hands, and the
  look-alike vegetables of the scene, which therefore stay in the picture as not-okra) but
  takes a random yellow-green to blue-green tint, as a green cloth, a leaf bed or a green tray
  would. Very bright spots of a dark image can clip towards white or yellow.
* ``replace``: the surrounding becomes generated foliage: a flat colour near the pod's own
  (so not green around a burgundy pod), a smooth blotchy bokeh of greens (a defocused plant), or
  overlapping blurred leaf shapes.

The two regions are blended over a feather of about one pixel outside the mask. Known flaw: the
okra's own anti-aliased edge pixels (inside the mask, kept as they are) still hold some of the
old surroundings, and the feather keeps some more just outside, so on a pale table a faint light
rim stays around the pod where the rest turned green (measured on white renders, replace mode:
luma 109-124 on the ring against 73-103 farther out). Feathering inwards would remove it; the
default models v0.7 and v0.8 were trained with this version. Images are ``(H, W, 3)`` uint8 RGB; masks
``(H, W)`` with okra > 0; all randomness comes from the ``numpy.random.Generator`` passed in, so
a seed repeats the result.
"""

from __future__ import annotations

import cv2
import numpy as np

from okrainsight.synth.camera import LUMA
from okrainsight.synth.pods import hsv

MODES = ("recolour", "replace")


def _green(rng: np.random.Generator, value: tuple[float, float] = (0.25, 0.75)) -> np.ndarray:
    """A random yellow-green to blue-green RGB colour (hue 70-150 degrees), float32 in [0, 255]."""
    hue = rng.uniform(70.0, 150.0)
    sat = rng.uniform(0.3, 0.85)
    val = rng.uniform(*value)
    return hsv(hue, sat, val) * np.float32(255.0)


def recolour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole image tinted one random green, keeping its shading; float32 ``(H, W, 3)``.

    Each pixel becomes the tint scaled by the pixel's luma relative to the image's mean
    luma, mixed with a little of the original colour so that distinct objects stay distinct.
    """
    img = image.astype(np.float32)
    luma = img @ LUMA  # Rec. 601, (H, W)
    tint = _green(rng, (0.3, 0.7))
    rel = luma / max(float(luma.mean()), 1.0)
    out = rel[..., None] * tint[None, None, :]
    keep = rng.uniform(0.0, 0.35)
    return np.clip((1.0 - keep) * out + keep * img, 0.0, 255.0)


def foliage(shape: tuple[int, int], rng: np.random.Generator, pod_colour: np.ndarray) -> np.ndarray:
    """A generated surrounding of ``shape`` ``(H, W)``; float32 ``(H, W, 3)`` in [0, 255].

    One of: a flat colour near ``pod_colour`` (the pod's mean RGB) with a gentle gradient,
    a blotchy bokeh of a few greens, or blurred overlapping leaf-shaped ellipses.
    """
    h, w = shape
    kind = rng.integers(3)
    if kind == 0:  # flat, near the pod's own colour: only ridges, cap and shading tell them apart
        base = np.clip(pod_colour * rng.uniform(0.7, 1.3, 3), 10, 245).astype(np.float32)
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (gx / max(w, 1) - 0.5) * rng.uniform(-0.4, 0.4) + (gy / max(h, 1) - 0.5) * rng.uniform(
            -0.4, 0.4
        )
        return np.clip(base[None, None, :] * (1.0 + ramp[..., None]), 0, 255)
    if kind == 1:  # bokeh: low-frequency blotches of a few greens
        cells = int(rng.integers(3, 9))
        small = np.stack([_green(rng) for _ in range(cells * cells)]).reshape(cells, cells, 3)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        sigma = max(h, w) / cells / 3.0
        return np.clip(cv2.GaussianBlur(out, (0, 0), sigma), 0, 255)
    # leaves: overlapping ellipses of several greens (hard-edged: OpenCV anti-aliases only uint8
    # images), then a random defocus
    out = np.empty((h, w, 3), np.float32)
    out[:] = _green(rng, (0.15, 0.5))
    for _ in range(int(rng.integers(6, 20))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.uniform(0.1, 0.45) * w), int(rng.uniform(0.04, 0.18) * h))
        cv2.ellipse(
            out, centre, axes, float(rng.uniform(0, 180)), 0, 360, _green(rng).tolist(), -1, cv2.LINE_8
        )
    sigma = rng.uniform(0.0, 6.0)
    return np.clip(cv2.GaussianBlur(out, (0, 0), sigma) if sigma > 0.5 else out, 0, 255)


def swap_background(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, mode: str | None = None
) -> np.ndarray:
    """``image`` with everything outside ``mask`` made green (mostly); uint8 ``(H, W, 3)``.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        mask: ``(H, W)``, okra where > 0. Pixels inside it are returned unchanged.
        rng: the source of randomness.
        mode: ``"recolour"`` or ``"replace"`` (module doc); None picks one at random.

    An image without okra is returned unchanged (there is nothing to set apart).
    """
    if image.ndim != 3 or image.shape[2] != 3 or mask.shape != image.shape[:2]:
        raise ValueError(f"image {image.shape} and mask {mask.shape} do not match")
    inside = mask > 0
    if not inside.any():
        return image
    if mode is None:
        mode = MODES[int(rng.integers(len(MODES)))]
    if mode == "recolour":
        outside = recolour(image, rng)
    elif mode == "replace":
        pod_colour = image[inside].reshape(-1, 3).astype(np.float32).mean(axis=0)
        outside = foliage(image.shape[:2], rng, pod_colour)
        outside += rng.normal(0.0, rng.uniform(0.0, 4.0), outside.shape).astype(np.float32)
    else:
        raise ValueError(f"unknown background mode {mode!r}; expected one of {', '.join(MODES)}")
    # alpha 1 on the okra, feathered over about one pixel outside it, 0 beyond
    alpha = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 0.7)
    alpha = np.maximum(alpha, inside)[..., None]
    out = alpha * image.astype(np.float32) + (1.0 - alpha) * outside
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


__all__ = ["MODES", "foliage", "recolour", "swap_background"]
