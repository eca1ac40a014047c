"""Flip averaging (test-time augmentation): the mean probability of an image and its mirror images.

The student is not exactly symmetric: its probability for a mirrored photo, mirrored back, differs
from its probability for the photo, most where it is unsure. Averaging the network's output over
the photo and some of its mirror images (``"h"`` left-right, ``"v"`` upside down, ``"hv"`` both,
i.e. turned half a turn) is a small ensemble that costs one more network run per flip.

What it does to the built-in model's accuracy and speed is measured by
``bench/bench_accuracy.py --flips`` and ``bench/bench_zooms.py --flips`` (``docs/model-card.md``,
"Flip averaging"; ``docs/benchmarks.md``).

Needs only numpy. Works on any ``(H, W, ...)`` array: the flips keep the shape, so a network with a
fixed, even non-square, input size can run every flipped copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: The mirror images that can be averaged in, besides the image itself.
FLIPS = ("h", "v", "hv")


def check_flips(flips: Sequence[str]) -> tuple[str, ...]:
    """``flips`` (a list or tuple) as a tuple of distinct names of :data:`FLIPS` in the order given
    (may be empty); ValueError naming the bad entry otherwise (a string is refused, not split)."""
    if not isinstance(flips, (list, tuple)):
        raise ValueError(f"flips must be a list of names like ['h', 'v', 'hv'], got {flips!r}")
    out: list[str] = []
    for f in flips:
        if f not in FLIPS:
            names = ", ".join(FLIPS)
            raise ValueError(f"unknown flip {f!r}: choose from {names} (h = left-right, v = upside down)")
        if f not in out:
            out.append(f)
    return tuple(out)


def parse_flips(text: str) -> tuple[str, ...]:
    """Parse ``"h,v,hv"`` (comma-separated) or ``"none"`` into flip names; ValueError with the reason."""
    text = text.strip().lower()
    if text in ("", "none", "0", "off"):
        return ()
    return check_flips([part.strip() for part in text.split(",")])


def flip(image: np.ndarray, name: str) -> np.ndarray:
    """``image`` mirrored by flip ``name`` (``"h"``: columns reversed, ``"v"``: rows, ``"hv"``: both).

    Each flip is its own inverse, so ``flip(flip(x, f), f)`` is ``x``.
    """
    if name == "h":
        return image[:, ::-1]
    if name == "v":
        return image[::-1]
    if name == "hv":
        return image[::-1, ::-1]
    raise ValueError(f"unknown flip {name!r}: choose from {', '.join(FLIPS)}")


def flip_averaged(
    image: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], flips: Sequence[str]
) -> np.ndarray:
    """Mean of ``predict(image)`` and, for each flip, ``predict`` of the flipped image flipped back.

    Args:
        image: ``(H, W, C)`` array, passed to ``predict`` as is and as C-contiguous mirror images.
        predict: maps such an image to an ``(H, W)`` map (e.g. okra probability, float32 0..1).
        flips: names from :data:`FLIPS`; empty: just ``predict(image)``.

    Returns:
        ``(H, W)`` float32. With all of :data:`FLIPS` the result is exactly equivariant: for the
        flipped image it is the flipped result.
    """
    return mean_over_flips(image, predict, check_flips(flips))


def mean_over_flips(
    image: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], names: tuple[str, ...]
) -> np.ndarray:
    """:func:`flip_averaged` for ``names`` already checked by :func:`check_flips` (the per-tile
    step of :func:`okrainsight.tiling.photo_probability`, which checks once per photo)."""
    total = np.array(predict(image), dtype=np.float32)  # a copy: the sum must not write into it
    for name in names:
        mirrored = np.ascontiguousarray(flip(image, name))
        total += flip(np.asarray(predict(mirrored), dtype=np.float32), name)
    return total / np.float32(1 + len(names))
