"""Tiled inference: run a fixed-size segmentation network over a photo of any shape without
squashing it, at one or more zooms, and blend the tiles' probabilities. Needs numpy and OpenCV.

The students are trained on crops of the input's shape at roughly true aspect ratio, so
squeezing a whole 2:1 photo into a 256x256 input distorts every pod twice over and shrinks it.
Here a photo is instead covered with **tiles of the network input's aspect ratio** (square for
the built-in model):

* zoom ``1``: the largest such tiles that fit the photo (a square photo is one tile for a square
  input, a 4:3 photo two overlapping ones);
* zoom ``z >= 1``: tiles ``1/z`` that size, so that the network sees pods ``z`` times larger
  (finer detail: ridges, the calyx cap);
* zoom ``0``: the whole photo resized to the input, aspect not kept (one pass; the fastest).

Neighbouring tiles overlap by at least ``overlap`` of their side and are blended with weights
that fall off linearly towards each tile's edges, so no seam shows; the maps of several zooms
are averaged with equal weight. ``bench/bench_accuracy.py --zooms`` measures the effect on the
real photographs (``docs/model-card.md``, "Tiles").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from okrainsight.flips import check_flips, mean_over_flips

#: Zooms a model card gets when it names none: aspect-preserving tiles, one scale.
DEFAULT_ZOOMS: tuple[float, ...] = (1.0,)
#: The largest zoom accepted (tiles 1/8 of the photo's shorter side).
MAX_ZOOM = 8.0
#: At most this many tiles per zoom: strips and huge zooms get fewer, larger (squeezed) tiles.
MAX_TILES = 64
#: Tiles are never smaller than this (pixels of the photo), unless the photo is.
MIN_TILE_SIDE = 32
#: A photo at most this much longer than one tile is squeezed into it rather than cut into two.
SQUEEZE_TOLERANCE = 1.1


def check_zooms(zooms: Sequence[float]) -> tuple[float, ...]:
    """``zooms`` as a tuple of distinct floats in the order given; ValueError unless non-empty and
    each is 0 or between 1 and :data:`MAX_ZOOM`."""
    out: list[float] = []
    for z in (float(v) for v in zooms):
        if not (z == 0.0 or 1.0 <= z <= MAX_ZOOM):
            raise ValueError(f"a zoom must be 0 (whole photo) or 1 to {MAX_ZOOM:g} (tiles), got {z:g}")
        if z not in out:
            out.append(z)
    if not out:
        raise ValueError("zooms must name at least one zoom (0 = whole photo, 1 = largest tiles, 2 = finer)")
    return tuple(out)


def parse_zooms(text: str) -> tuple[float, ...]:
    """Parse ``"1,2"`` (comma-separated zooms) into ``(1.0, 2.0)``; ValueError with the reason."""
    try:
        values = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise ValueError(f"zooms must be comma-separated numbers like '1,2', got {text!r}") from exc
    return check_zooms(values)


def tile_starts(length: int, side: int, overlap: float = 0.25) -> list[int]:
    """Evenly spaced tile offsets covering ``0..length`` with tiles of ``side`` pixels that overlap
    by at least ``overlap * side`` (the first starts at 0, the last ends at ``length``)."""
    if side >= length:
        return [0]
    step = max(1.0, side * (1.0 - overlap))
    n = math.ceil((length - side) / step) + 1
    return [int(round(v)) for v in np.linspace(0, length - side, n)]


def tile_windows(
    height: int, width: int, zoom: float, overlap: float = 0.25, aspect: float = 1.0
) -> list[tuple[int, int, int, int]]:
    """The tiles of one zoom as ``(y, x, tile_height, tile_width)`` in pixel coordinates
    (row, column of the top-left corner). Zoom 0 is the whole photo; zoom ``z >= 1`` gives tiles
    of width/height ``aspect``, ``1/z`` the size of the largest such tile inside the photo.

    Limits, so that no photo costs more than :data:`MAX_TILES` network runs per zoom: a tile side
    is at least :data:`MIN_TILE_SIDE` pixels (or the photo's side); a side within
    :data:`SQUEEZE_TOLERANCE` of the photo's becomes the photo's (one slightly squeezed tile, not
    two nearly identical ones); and where a long strip would still need more tiles, the tiles
    grow (and get squeezed) until it does not.
    """
    if zoom == 0:
        return [(0, 0, height, width)]
    th = max(min(float(height), width / aspect) / zoom, min(height, MIN_TILE_SIDE))
    tw = max(min(float(width), th * aspect), min(width, MIN_TILE_SIDE))
    while True:
        ih = height if th * SQUEEZE_TOLERANCE >= height else max(1, int(round(th)))
        iw = width if tw * SQUEEZE_TOLERANCE >= width else max(1, int(round(tw)))
        ys, xs = tile_starts(height, ih, overlap), tile_starts(width, iw, overlap)
        if len(ys) * len(xs) <= MAX_TILES:
            return [(y, x, ih, iw) for y in ys for x in xs]
        grow = math.sqrt(len(ys) * len(xs) / MAX_TILES) * 1.05
        th, tw = min(float(height), th * grow), min(float(width), tw * grow)


def _ramp(n: int, feather: float) -> np.ndarray:
    """1-D blend weight over ``n`` pixels: rises linearly over ``feather`` pixels from each end
    (the least overlap; where tiles overlap more, the middle of the overlap is a plain average)
    (never below 1e-3, so a pixel covered by one tile keeps its value)."""
    i = np.arange(n, dtype=np.float32)
    d = np.minimum(i + 0.5, n - i - 0.5)
    return np.clip(d / max(feather, 1.0), 1e-3, 1.0).astype(np.float32)


def at_input_size(
    crop: np.ndarray, input_size: tuple[int, int], run: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Probability of one ``(h, w, 3)`` uint8 crop through a network of fixed ``input_size``
    ``(width, height)``: the crop is resized to it (``INTER_AREA`` when shrinking both ways,
    bilinear otherwise; not at all when it already fits), ``run`` maps that to an
    ``(height, width)`` float32 probability, which is resized back to ``(h, w)`` (bilinear).
    The ``predict`` of :func:`tiled_probability` for the runtime and for ``okra eval``."""
    h, w = crop.shape[:2]
    iw, ih = input_size
    same = (w, h) == (iw, ih)
    interp = cv2.INTER_AREA if (w >= iw and h >= ih) else cv2.INTER_LINEAR
    p = run(crop if same else cv2.resize(crop, (iw, ih), interpolation=interp))
    return p if same else cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR)


def tiled_probability(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    zooms: Sequence[float] = DEFAULT_ZOOMS,
    overlap: float = 0.25,
    aspect: float = 1.0,
) -> np.ndarray:
    """Blend ``predict`` over the tiles of every zoom.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        predict: maps a ``(h, w, 3)`` uint8 crop to its ``(h, w)`` float32 probability (0..1),
            resizing to the network's input and back itself.
        zooms: see the module docstring (validated by :func:`check_zooms`).
        overlap: least overlap of neighbouring tiles, as a fraction of the tile side (0..0.9).
        aspect: width / height of the tiles: the network input's (1.0 for a square input).

    Returns:
        ``(H, W)`` float32 in 0..1.
    """
    zooms = check_zooms(zooms)
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must lie in 0..0.9, got {overlap}")
    h, w = image.shape[:2]
    total = np.zeros((h, w), np.float32)
    for zoom in zooms:
        windows = tile_windows(h, w, zoom, overlap, aspect)
        if len(windows) == 1:
            y, x, th, tw = windows[0]
            total += np.asarray(predict(np.ascontiguousarray(image[y : y + th, x : x + tw])), np.float32)
            continue
        # Tiles form a grid of one shape, so the blend weights are separable: each tile weighs
        # ramp_y (x) ramp_x, and their sum over the grid is the outer product of the 1-D sums.
        th, tw = windows[0][2], windows[0][3]
        ry, rx = _ramp(th, overlap * th), _ramp(tw, overlap * tw)
        wt = ry[:, None] * rx[None, :]
        sum_y, sum_x = np.zeros(h, np.float32), np.zeros(w, np.float32)
        for y in sorted({y for y, _, _, _ in windows}):
            sum_y[y : y + th] += ry
        for x in sorted({x for _, x, _, _ in windows}):
            sum_x[x : x + tw] += rx
        acc = np.zeros((h, w), np.float32)
        for y, x, _, _ in windows:
            p = np.array(predict(np.ascontiguousarray(image[y : y + th, x : x + tw])), np.float32)
            p *= wt
            acc[y : y + th, x : x + tw] += p
        acc /= sum_y[:, None]
        acc /= sum_x[None, :]
        total += acc
    return np.clip(total / len(zooms), 0.0, 1.0)


def photo_probability(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    input_size: tuple[int, int],
    zooms: Sequence[float] = DEFAULT_ZOOMS,
    flips: Sequence[str] = (),
) -> np.ndarray:
    """Probability of a whole photo through a network of fixed ``input_size`` ``(width, height)``:
    the photo is covered with tiles at ``zooms`` (:func:`tiled_probability`), each tile is resized
    to the input and back (:func:`at_input_size`), and ``run`` (a ``(height, width, 3)`` uint8
    image to its ``(height, width)`` float32 probability) is averaged over ``flips``
    (:func:`okrainsight.flips.flip_averaged`; the names are checked once per photo). The one
    pipeline of the runtime and ``okra eval``.

    Returns:
        ``(H, W)`` float32 in 0..1 for an ``(H, W, 3)`` uint8 ``image``.
    """
    iw, ih = input_size
    names = check_flips(flips)
    return tiled_probability(
        image,
        lambda crop: at_input_size(crop, (iw, ih), lambda small: mean_over_flips(small, run, names)),
        zooms,
        aspect=iw / ih,
    )


__all__ = [
    "DEFAULT_ZOOMS",
    "at_input_size",
    "check_zooms",
    "parse_zooms",
    "photo_probability",
    "tile_starts",
    "tile_windows",
    "tiled_probability",
]
