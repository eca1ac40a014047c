"""Okra masks from probability maps: a plain threshold, or hysteresis with seed pixels.

A plain threshold ``probability >= threshold`` has to trade two errors against each other: a
low threshold fills the pale, uncertain parts of real pods (cap ends, highlights) but also
keeps weak, isolated blobs on other green produce and leaves; a high one does the opposite.
Hysteresis (as in Canny's edge linking and ``skimage.filters.apply_hysteresis_threshold``)
keeps a region of ``probability >= threshold`` only when it holds at least one *seed* pixel
with ``probability >= seed_threshold``: every kept region has a confident core, and grows
from it down to the low threshold.

Torch-free (NumPy and OpenCV), shared by the runtime, ``okra eval`` and the benchmarks.
"""

from __future__ import annotations

import cv2
import numpy as np


def okra_mask(probability: np.ndarray, threshold: float, seed_threshold: float | None = None) -> np.ndarray:
    """The okra mask of a probability map.

    Args:
        probability: ``(H, W)`` float, okra probability 0..1 per pixel.
        threshold: a pixel can be okra only at ``probability >= threshold``.
        seed_threshold: when given, keep only the 8-connected regions of
            ``probability >= threshold`` that contain a pixel with ``probability >=
            seed_threshold``; None (or a seed threshold at or below ``threshold``) is a plain
            threshold.

    Returns:
        ``(H, W)`` bool mask, same pixel grid as ``probability``.
    """
    low = probability >= threshold
    if effective_seed_threshold(threshold, seed_threshold) is None or not low.any():
        return low
    n, labels = cv2.connectedComponents(low.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[probability >= seed_threshold])] = True
    keep[0] = False
    return keep[labels]


def effective_seed_threshold(threshold: float, seed_threshold: float | None) -> float | None:
    """The seed threshold that changes anything: ``seed_threshold`` as a float when it lies above
    ``threshold``, else None (a seed at or below the threshold is a plain threshold)."""
    if seed_threshold is None or float(seed_threshold) <= threshold:
        return None
    return float(seed_threshold)


def check_seed_threshold(threshold: float, seed_threshold: float | None) -> float | None:
    """``seed_threshold`` as a float (None stays None); ValueError unless ``threshold < seed < 1``."""
    if seed_threshold is None:
        return None
    seed = float(seed_threshold)
    if not threshold < seed < 1.0:
        raise ValueError(f"seed_threshold must lie between the threshold ({threshold:g}) and 1, got {seed:g}")
    return seed
