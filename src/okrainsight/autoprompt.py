"""Auto-prompting: propose prompt points so a person clicks only where needed.

Two sources of proposals:

* a student's predicted mask (:func:`propose_from_mask`): for each predicted pod, two
  positive points on its medial axis (where the distance to the pod's edge peaks across
  the pod, a quarter of its length either side of its centre), plus negative points on
  the background as far as possible from any pod;
* with no model, a colour-and-shape prior (:func:`okra_prior_mask`): green to
  yellow-green pixels that form elongated regions.

Every proposal carries ``"auto": True`` and its ``"source"``, and the labelling loop
records both in the manifest. Points are ``(x, y)`` pixels of the oriented image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np


def okra_prior_mask(
    image: np.ndarray,
    *,
    hue_range: tuple[int, int] = (22, 95),
    min_saturation: int = 50,
    min_value: int = 35,
    min_area: float = 0.002,
    min_elongation: float = 1.8,
) -> np.ndarray:
    """A rough okra mask from colour and shape alone.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        hue_range: OpenCV hue band (0..180) taken as green to yellow-green.
        min_area: smallest region kept, as a fraction of the image area.
        min_elongation: major/minor axis ratio a region needs to look like a pod.

    Returns:
        ``(H, W)`` bool.
    """
    from okrainsight.qc import elongation

    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    raw = ((h >= hue_range[0]) & (h <= hue_range[1]) & (s >= min_saturation) & (v >= min_value)).astype(
        np.uint8
    )
    k = max(3, (min(image.shape[:2]) // 100) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    raw = cv2.morphologyEx(raw, cv2.MORPH_OPEN, kernel)
    raw = cv2.morphologyEx(raw, cv2.MORPH_CLOSE, kernel)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(raw, connectivity=8)
    out = np.zeros(raw.shape, bool)
    min_px = min_area * raw.size
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_px:
            continue
        comp = lab == i
        if elongation(comp) >= min_elongation:
            out |= comp
    return out


def _axis_points(comp: np.ndarray, dist: np.ndarray, n_points: int) -> list[list[float]]:
    """``n_points`` points on the medial axis of one region (bool mask)."""
    ys, xs = np.nonzero(comp)
    xy = np.column_stack([xs, ys]).astype(np.float64)
    centre = xy.mean(axis=0)
    if len(xy) < 3:
        return [[float(centre[0]), float(centre[1])]]
    _, _, vt = np.linalg.svd(xy - centre, full_matrices=False)
    along = (xy - centre) @ vt[0]
    lo, hi = np.percentile(along, [2, 98])
    length = hi - lo
    if n_points == 1:
        targets = [0.5 * (lo + hi)]
    else:
        targets = list(np.linspace(lo + 0.25 * length, hi - 0.25 * length, n_points))
    slab = max(1.0, 0.04 * length)
    pts = []
    d = dist[ys, xs]
    for t in targets:
        near = np.abs(along - t) <= slab
        if not near.any():
            near = np.abs(along - t) <= np.abs(along - t).min() + 0.5
        idx = np.flatnonzero(near)
        best = idx[np.argmax(d[idx])]  # the ridge of the distance transform: the medial axis
        pts.append([float(xs[best]), float(ys[best])])
    return pts


def propose_from_mask(
    mask: np.ndarray,
    *,
    points_per_pod: int = 2,
    max_pods: int = 8,
    negatives: int = 2,
    min_area: float = 0.001,
) -> dict[str, Any] | None:
    """Prompt points from a (predicted) okra mask.

    Args:
        mask: ``(H, W)`` bool, okra = True.
        points_per_pod: positive points per region (on its medial axis).
        max_pods: at most this many regions, largest first.
        negatives: background points, as far from okra (and from each other) as possible.
        min_area: regions smaller than this fraction of the image are ignored.

    Returns:
        ``{"points", "labels", "box": None}`` or None when no region is large enough.
    """
    m = np.asarray(mask, bool)
    h, w = m.shape
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    order = [i for i in order if stats[i, cv2.CC_STAT_AREA] >= min_area * m.size][:max_pods]
    if not order:
        return None
    dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 5)
    points: list[list[float]] = []
    for i in order:
        points.extend(_axis_points(lab == i, dist, points_per_pod))
    labels = [1] * len(points)
    if negatives > 0 and not m.all():
        # background distance, kept away from the image edge so negatives sit on real background
        bg = (~m).astype(np.uint8)
        bg[[0, -1], :] = 0
        bg[:, [0, -1]] = 0
        bdist = cv2.distanceTransform(bg, cv2.DIST_L2, 5)
        for _ in range(negatives):
            if bdist.max() <= 0:
                break
            y, x = np.unravel_index(int(np.argmax(bdist)), bdist.shape)
            points.append([float(x), float(y)])
            labels.append(0)
            yy, xx = np.ogrid[:h, :w]
            bdist[(yy - y) ** 2 + (xx - x) ** 2 <= (0.25 * max(h, w)) ** 2] = 0
    return {"points": points, "labels": labels, "box": None}


def auto_prompt(
    image: np.ndarray,
    *,
    student: Callable[[np.ndarray], np.ndarray] | None = None,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """Propose prompts for ``image`` (``(H, W, 3)`` uint8 RGB).

    Args:
        student: optional callable returning an ``(H, W)`` bool okra mask for the image;
            without it the colour-and-shape prior is used.
        kwargs: passed to :func:`propose_from_mask`.

    Returns:
        ``{"points", "labels", "box", "auto": True, "source": "student" | "prior"}``, or
        None when nothing okra-like was found.
    """
    if student is not None:
        mask, source = np.asarray(student(image), bool), "student"
    else:
        mask, source = okra_prior_mask(image), "prior"
    prompt = propose_from_mask(mask, **kwargs)
    if prompt is None:
        return None
    return {**prompt, "auto": True, "source": source}
