"""The torch-free runtime: segment photos with an exported ONNX model in ONNX Runtime.

Nothing here (or in what it imports) imports torch, so ``okra segment`` runs with only
the core dependencies (numpy, OpenCV, ONNX Runtime, Pillow).

A model is a folder holding ``card.json`` and ``model.onnx`` (see
:mod:`okrainsight.checkpoint`), an ``.onnx`` file with its ``card.json`` beside it (or,
failing that, the card embedded in the file's metadata by :func:`okrainsight.export.export_onnx`),
or the name of a built-in model in the package's ``models/<name>/`` folder (``default``).

Conventions: images are ``(H, W, 3)`` uint8 RGB; masks and probability maps are
``(H, W)`` at the photo's full resolution; coordinates are ``(x, y)`` pixels with the
origin at the top-left; boxes are ``[x0, y0, x1, y1]`` with ``x1, y1`` exclusive
(``x1 = x0 + width``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.checkpoint import CARD_FILE, ONNX_FILE, WEIGHTS_FILE, ModelCard, load_card
from okrainsight.errors import ConfigError, ModelError
from okrainsight.flips import check_flips
from okrainsight.hysteresis import effective_seed_threshold, okra_mask
from okrainsight.tiling import check_zooms, photo_probability

log = logging.getLogger(__name__)

#: Folder of the built-in models (package data): ``models/<name>/card.json + model.onnx``.
BUILTIN_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_THREADS = 2
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# ----------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------


@dataclass
class Pod:
    """One okra pod found in a photo.

    Attributes:
        area_px: pixels in the pod's mask.
        bbox: ``[x0, y0, x1, y1]`` (x1, y1 exclusive).
        length_px: tip-to-tip length along the pod, in pixels: the geodesic diameter of the
            pod's mask (the longest shortest path that stays inside it), so a curved pod is
            measured along its curve rather than by its straight span (see :func:`pod_length`).
            Chosen over the min-area-rectangle's long side, which shortens bent pods; for a
            thick bent pod the path cuts the inside of the bend slightly.
        centroid: ``(x, y)`` centre of mass.
        contour: ``(K, 2)`` int32 ``(x, y)`` points of the outer boundary.
        tender_probability: calibrated probability the pod is tender (see :mod:`okrainsight.grading`);
            ``None`` without a grader or when the pod failed the okra gate.
        okra_plausible: the grader's okra gate passed (``None`` without a grader).
        gate_reason: ``"ok"`` or why the gate rejected the pod (``None`` without a grader).
        crop: bool mask of this pod inside ``bbox`` (shape ``(y1 - y0, x1 - x0)``; not serialised).
    """

    area_px: int
    bbox: list[int]
    length_px: float
    centroid: tuple[float, float]
    contour: np.ndarray
    tender_probability: float | None = None
    crop: np.ndarray | None = field(default=None, repr=False)
    okra_plausible: bool | None = None
    gate_reason: str | None = None

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """This pod's ``(H, W)`` bool mask in an image of ``shape``."""
        out = np.zeros(shape[:2], bool)
        if self.crop is not None:
            x0, y0, x1, y1 = self.bbox
            out[y0:y1, x0:x1] = self.crop
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in ``results.json``."""
        d: dict[str, Any] = {
            "area_px": int(self.area_px),
            "bbox": [int(v) for v in self.bbox],
            "length_px": round(float(self.length_px), 1),
            "tender_probability": self.tender_probability,
        }
        if self.okra_plausible is not None:
            d["okra_plausible"] = bool(self.okra_plausible)
            d["gate"] = self.gate_reason
        return d


@dataclass
class Segmentation:
    """The result of :meth:`Segmenter.segment`.

    Attributes:
        probability: ``(H, W)`` float32 in 0..1 at the photo's full resolution.
        mask: ``(H, W)`` bool, ``probability >= threshold`` (before any cleanup), keeping only the
            regions that reach ``seed_threshold`` somewhere when one is set
            (:func:`okrainsight.hysteresis.okra_mask`).
        pods: pods found, largest first.
        threshold: the threshold used.
        seed_threshold: the seed threshold used, or None (a plain threshold).
    """

    probability: np.ndarray
    mask: np.ndarray
    pods: list[Pod]
    threshold: float
    seed_threshold: float | None = None

    @property
    def okra_found(self) -> bool:
        return okra_found(self)

    @property
    def okra_fraction(self) -> float:
        return okra_fraction(self.mask)


def okra_found(result: Segmentation | list[Pod]) -> bool:
    """True when at least one pod (a component above the minimum area) was found.

    With a grader (pods carry ``okra_plausible``): when at least one pod passed the grader's okra
    gate, or was refused only for being larger than one pod can be (``gate_reason == "too large"``:
    a market pile or a close-up of a heap, where the segmenter joins many pods into one region).
    """
    pods = result.pods if isinstance(result, Segmentation) else result
    gated = [p for p in pods if p.okra_plausible is not None]
    if gated:
        return any(p.okra_plausible or p.gate_reason == "too large" for p in gated)
    return len(pods) > 0


def okra_fraction(mask: np.ndarray) -> float:
    """Share of pixels called okra, 0..1 (``mask`` ``(H, W)``, bool or uint8 0/255)."""
    m = np.asarray(mask)
    if m.size == 0:
        return 0.0
    return float(np.count_nonzero(m) / m.size)


# ----------------------------------------------------------------------------------
# Pods
# ----------------------------------------------------------------------------------


def _geodesic_steps(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """Breadth-first growth inside ``mask`` from ``seed`` (row, col), alternating 4- and
    8-neighbour steps (an octagonal distance). Returns the int32 step at which each pixel
    was reached (-1 outside or unreached)."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    square = np.ones((3, 3), np.uint8)
    m = mask.astype(np.uint8)
    steps = np.full(m.shape, -1, np.int32)
    reached = np.zeros_like(m)
    reached[seed] = 1
    steps[seed] = 0
    k = 0
    while True:
        grown = cv2.dilate(reached, cross if k % 2 == 0 else square) & m
        new = (grown > 0) & (reached == 0)
        if not new.any() and k % 2 == 0:
            # Pixels joined only diagonally (a 4-step finds nothing): take the 8-step now.
            grown = cv2.dilate(reached, square) & m
            new = (grown > 0) & (reached == 0)
        if not new.any():
            return steps
        k += 1
        steps[new] = k
        reached = grown


def _farthest(steps: np.ndarray) -> tuple[int, int]:
    idx = int(np.argmax(steps))
    return idx // steps.shape[1], idx % steps.shape[1]


def _path_length(steps: np.ndarray, end: tuple[int, int], every: int = 4) -> float:
    """Euclidean length of the geodesic path from ``end`` back to the seed (step 0), measured
    on points taken every ``every`` pixels so the staircase of the pixel path is smoothed out."""
    h, w = steps.shape
    y, x = end
    points = [(y, x)]
    while steps[y, x] > 0:
        d = steps[y, x]
        best = None
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w and 0 <= steps[ny, nx] < d:
                best = (ny, nx)
                break
        if best is None:  # cannot happen for a breadth-first map; stop rather than loop
            break
        y, x = best
        points.append((y, x))
    pts = np.array(points[::every] + ([points[-1]] if (len(points) - 1) % every else []), np.float64)
    if len(pts) < 2:
        return 0.0
    return float(np.sqrt((np.diff(pts, axis=0) ** 2).sum(axis=1)).sum())


def pod_length(mask: np.ndarray, *, max_side: int = 160) -> float:
    """Tip-to-tip length of one pod's ``(H, W)`` mask (bool or 0/255; non-zero = pod), in pixels of
    ``mask``: the geodesic diameter
    (the longest shortest path inside the mask), measured along that path.

    The end points are found by two breadth-first sweeps (farthest pixel from any pixel,
    then farthest from that); the path between them is traced back and its Euclidean length
    taken on points every 4 pixels, on the pod's crop scaled to at most ``max_side`` px.
    One pixel is added for the end pixels themselves.
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0.0
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.uint8)
    scale = 1.0
    if max(crop.shape) > max_side:
        scale = max(crop.shape) / max_side
        size = (max(1, round(crop.shape[1] / scale)), max(1, round(crop.shape[0] / scale)))
        crop = (cv2.resize(crop * 255, size, interpolation=cv2.INTER_AREA) >= 128).astype(np.uint8)
        if not crop.any():
            return float(max(ys.max() - ys.min(), xs.max() - xs.min()) + 1)
    # Downscaling can cut a thin tip off as a separate speck: walk the largest piece only.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if n > 2:
        crop = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    cy, cx = np.nonzero(crop)
    first = _geodesic_steps(crop, (int(cy[0]), int(cx[0])))
    tip = _farthest(first)
    sweep = _geodesic_steps(crop, tip)
    return (_path_length(sweep, _farthest(sweep)) + 1.0) * scale


def _grow_labels(labels: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Grow the non-zero ``labels`` one pixel ring per step into the ``allowed`` zero pixels
    (a geodesic Voronoi split; where two labels meet in one step the higher one wins)."""
    kernel = np.ones((3, 3), np.uint8)
    while True:
        free = (labels == 0) & (allowed > 0)
        if not free.any():
            return labels
        grown = cv2.dilate(labels, kernel)
        update = free & (grown > 0)
        if not update.any():
            return labels
        labels[update] = grown[update]


def _merge_wide_necks(labels: np.ndarray, dist: np.ndarray, n: int, neck_ratio: float) -> np.ndarray:
    """Join neighbouring parts whose shared boundary is not a neck: longer than ``neck_ratio``
    times the thinner part's largest inscribed radius. Returns labels renumbered 1..k."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    peaks = [0.0] + [float(dist[labels == j].max()) for j in range(1, n + 1)]
    parent = list(range(n + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a in range(1, n + 1):
        around = cv2.dilate((labels == a).astype(np.uint8), cross) > 0
        touching = labels[around & (labels != a) & (labels > 0)]
        for b in np.unique(touching):
            b = int(b)
            if b > a and int((touching == b).sum()) > neck_ratio * min(peaks[a], peaks[b]):
                parent[find(b)] = find(a)
    roots = sorted({find(j) for j in range(1, n + 1)})
    lut = np.zeros(n + 1, np.uint16)
    for j in range(1, n + 1):
        lut[j] = roots.index(find(j)) + 1
    return lut[labels]


def _work_scale(shape: tuple[int, int], work_side: int) -> tuple[float, tuple[int, int]]:
    """How much a ``(h, w)`` component is shrunk to work at most ``work_side`` px, and the
    ``(width, height)`` it is shrunk to (its own size when it already fits)."""
    h, w = shape
    scale = max(h, w) / work_side if max(h, w) > work_side else 1.0
    return scale, (max(1, round(w / scale)), max(1, round(h / scale)))


def _shrink_mask(u8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 0/1 uint8 mask resized to ``size`` ``(width, height)`` by area: bool, True where half covered."""
    return cv2.resize(u8 * 255, size, interpolation=cv2.INTER_AREA) >= 128


def _full_size_parts(labels: np.ndarray, u8: np.ndarray, count: int, scale: float) -> list[np.ndarray]:
    """Parts ``1..count`` of ``labels`` (uint16, on the component shrunk by ``scale``) as bool masks of
    the full-size 0/1 component ``u8``: resized back (nearest), cut to the component, and grown
    over the pixels the resizing left unlabelled."""
    if scale > 1.0:
        h, w = u8.shape
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        labels[u8 == 0] = 0
        labels = _grow_labels(labels, u8)
    return [labels == k for k in range(1, count + 1)]


def _split_component(
    comp: np.ndarray,
    min_area: int,
    core_ratio: float,
    work_side: int = 256,
    neck_ratio: float = 1.5,
) -> list[np.ndarray]:
    """Split one connected component into touching pods where the mask has clear necks.

    Conservative: *cores* are the parts where the distance to the background is at least
    ``core_ratio`` of the component's maximum. Two or more separate cores, each big enough,
    seed a marker-controlled watershed on the distance map, computed as a geodesic growth
    of the cores inside the component, so the cut falls on the neck between them. Parts
    whose shared boundary is longer than ``neck_ratio`` times the thinner part's inscribed
    radius are joined again (no neck there: the mask alone cannot tell where one pod ends).
    Any part below ``min_area`` cancels the split. Works on the component scaled to at most
    ``work_side`` px, then carries the labels back to full resolution.
    """
    u8 = comp.astype(np.uint8)
    scale, size = _work_scale(comp.shape, work_side)
    small = _shrink_mask(u8, size).astype(np.uint8) if scale > 1.0 else u8
    dist = cv2.distanceTransform(small, cv2.DIST_L2, 5)
    peak = float(dist.max())
    if peak < 2.0:
        return [comp]
    cores = (dist >= core_ratio * peak).astype(np.uint8)
    n, core_labels, stats, _ = cv2.connectedComponentsWithStats(cores, connectivity=8)
    min_core = max(4.0, min_area / scale**2 / 20)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_core]
    if len(big) < 2:
        return [comp]
    labels = np.zeros(small.shape, np.uint16)
    for k, i in enumerate(big, start=1):
        labels[core_labels == i] = k
    labels = _grow_labels(labels, small)
    labels = _merge_wide_necks(labels, dist, len(big), neck_ratio)
    count = int(labels.max())
    if count < 2:
        return [comp]
    parts = _full_size_parts(labels, u8, count, scale)
    if any(int(p.sum()) < min_area for p in parts):
        return [comp]
    return parts


def _split_by_probability(
    comp: np.ndarray,
    prob: np.ndarray,
    min_area: int,
    levels: tuple[float, ...] = (0.7, 0.8, 0.9),
    pod_elongation: float = 4.5,
    pod_solidity: float = 0.75,
    gain: float = 1.2,
    part_elongation: float = 2.0,
    contrast: float = 0.15,
    work_side: int = 256,
) -> list[np.ndarray]:
    """Split a component that is not shaped like one pod where its probability has valleys.

    Pods that lie side by side along their whole length leave no neck in the mask, but the
    network is usually less sure at the line where they touch. A component that is stubby or
    ragged for a pod (elongation below ``pod_elongation`` or solidity below ``pod_solidity``) is
    cut at each of ``levels`` in turn: the parts of it where the probability reaches the level
    (each at least a quarter of ``min_area`` and 16 px) seed a geodesic growth back over the whole
    component. The first level wins whose parts are each at least ``min_area`` and at least
    ``part_elongation`` long for their width, on average more than ``gain`` times as elongated as
    the component, and divided by a real valley: the median probability on the lines where the
    parts meet at least ``contrast`` below the median over the seeds (a highlight or a ridge
    line along one pod is shallower than that). Otherwise the component stays whole. Like
    :func:`_split_component`, it works on the component scaled to at most ``work_side`` px and
    carries the labels back to full resolution.

    Args:
        comp: ``(h, w)`` bool mask of one connected component (a crop).
        prob: ``(h, w)`` float32 okra probability over the same crop.
        min_area: smallest part in pixels.
    """
    from okrainsight.grading.features import pod_shape_stats  # the gate's own shape measure

    u8 = comp.astype(np.uint8)
    scale, size = _work_scale(comp.shape, work_side)
    small, p, small_min = comp, prob, float(min_area)
    if scale > 1.0:
        small = _shrink_mask(u8, size)
        p = cv2.resize(np.ascontiguousarray(prob, np.float32), size, interpolation=cv2.INTER_AREA)
        small_min = min_area / scale**2
    if not small.any():
        return [comp]
    shape = pod_shape_stats(small)
    elongation = shape["elongation"]
    if elongation >= pod_elongation and shape["solidity"] >= pod_solidity:
        return [comp]
    small_u8 = small.astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for level in levels:
        core = (small & (p >= level)).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
        seeds = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= max(small_min / 4, 16 / scale**2, 2)]
        if len(seeds) < 2:
            continue
        grown = np.zeros(small.shape, np.uint16)
        for k, i in enumerate(seeds, start=1):
            grown[labels == i] = k
        seeded = grown > 0
        grown = _grow_labels(grown, small_u8)
        parts = [grown == k for k in range(1, len(seeds) + 1)]
        if any(float(part.sum()) < small_min for part in parts):
            continue
        stretch = [pod_shape_stats(part)["elongation"] for part in parts]
        if min(stretch) < part_elongation or float(np.mean(stretch)) <= gain * elongation:
            continue
        # pixels next to another part (not merely next to the background): where the cut runs
        lowest = cv2.erode(np.where(grown > 0, grown, np.uint16(65535)).astype(np.uint16), cross)
        seam = (cv2.dilate(grown, cross) != lowest) & (grown > 0)
        if not seam.any() or float(np.median(p[seeded])) - float(np.median(p[seam])) < contrast:
            continue
        if scale > 1.0:  # carry the labels back to full resolution
            parts = _full_size_parts(grown, u8, len(seeds), scale)
            if any(int(part.sum()) < min_area for part in parts):
                return [comp]
        return parts
    return [comp]


def find_pods(
    mask: np.ndarray,
    *,
    min_area: int | None = None,
    min_area_fraction: float = 0.0005,
    split_touching: bool = True,
    core_ratio: float = 0.65,
    probability: np.ndarray | None = None,
) -> list[Pod]:
    """Pods in a full-resolution mask: connected components after a small cleanup.

    Args:
        mask: ``(H, W)`` bool (or 0/255) okra mask.
        probability: ``(H, W)`` float okra probability the mask came from; with it (and
            ``split_touching``) stubby or ragged components are also split where the probability
            has valleys (:func:`_split_by_probability`), which separates pods lying side by side.
        min_area: smallest pod in pixels; default ``max(16, min_area_fraction * H * W)``.
        split_touching: split touching pods at clear necks (distance transform + watershed).
        core_ratio: how deep a neck must be to split there (higher = more conservative... fewer cores).

    Returns:
        Pods sorted by area, largest first.

    The cleanup is a morphological opening then closing with an elliptical kernel of about
    0.4% of the image's shorter side (at least 3 px), which removes specks and fills pin holes.
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    h, w = m.shape[:2]
    if min_area is None:
        min_area = max(16, int(round(min_area_fraction * h * w)))
    k = max(3, int(round(0.004 * min(h, w))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    clean = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(clean, connectivity=8)
    prob32 = None if probability is None else np.asarray(probability, np.float32)
    pods: list[Pod] = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area:
            continue
        x, y, bw, bh = (int(v) for v in stats[i, :4])
        pad = 2
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(w, x + bw + pad), min(h, y + bh + pad)
        comp = labels[y0:y1, x0:x1] == i
        parts = _split_component(comp, min_area, core_ratio) if split_touching else [comp]
        if split_touching and prob32 is not None:
            crop = prob32[y0:y1, x0:x1]
            parts = [q for part in parts for q in _split_by_probability(part, crop, min_area)]
        for part in parts:
            pods.append(_make_pod(part, (x0, y0)))
    pods.sort(key=lambda p: p.area_px, reverse=True)
    return pods


def _make_pod(part: np.ndarray, offset: tuple[int, int]) -> Pod:
    ox, oy = offset
    u8 = part.astype(np.uint8)
    ys, xs = np.nonzero(u8)
    contours, _ = cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2) + np.array([ox, oy], np.int32)
    bx0, by0, bx1, by1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return Pod(
        area_px=int(len(ys)),
        bbox=[bx0 + ox, by0 + oy, bx1 + ox, by1 + oy],
        length_px=pod_length(part),
        centroid=(float(xs.mean()) + ox, float(ys.mean()) + oy),
        contour=contour.astype(np.int32),
        crop=part[by0:by1, bx0:bx1].copy(),
    )


# ----------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------


def list_builtin_models() -> list[str]:
    """Names of the built-in models (folders under ``okrainsight/models/`` with a card and an ONNX file)."""
    if not BUILTIN_DIR.is_dir():
        return []
    return sorted(
        p.name for p in BUILTIN_DIR.iterdir() if (p / CARD_FILE).is_file() and (p / ONNX_FILE).is_file()
    )


def resolve_model(spec: str | os.PathLike[str]) -> tuple[Path, ModelCard]:
    """Find the ONNX file and card for ``spec`` (folder, ``.onnx`` file, or built-in name).

    Returns:
        ``(onnx_path, card)``.

    Raises:
        ModelError: nothing usable there, naming what was tried and what exists.
    """
    p = Path(spec)
    if not p.exists():
        text = os.fspath(spec)
        if _NAME_RE.match(text) and not text.endswith(".onnx"):
            d = BUILTIN_DIR / text
            if (d / CARD_FILE).is_file() and (d / ONNX_FILE).is_file():
                return d / ONNX_FILE, load_card(d)
            names = list_builtin_models()
            have = ", ".join(names) if names else "none are installed yet"
            raise ModelError(
                f"no built-in model named {text!r} and no such file or folder (built-in models: {have})"
            )
        raise ModelError(f"{p}: no such model file or folder")
    if p.is_dir():
        onnx_path = p / ONNX_FILE
        if not onnx_path.is_file():
            has_weights = (p / WEIGHTS_FILE).is_file()
            hint = " (it has PyTorch weights: export it to ONNX first)" if has_weights else ""
            raise ModelError(f"{p}: no {ONNX_FILE} in this model folder{hint}")
        return onnx_path, load_card(p)
    if p.suffix.lower() != ".onnx":
        raise ModelError(f"{p}: not an ONNX model (expected a model folder or a .onnx file)")
    embedded = _embedded_card(p)
    if (p.parent / CARD_FILE).is_file():
        card = load_card(p.parent)
        if embedded is not None and (embedded.arch, embedded.input_size) != (card.arch, card.input_size):
            raise ModelError(
                f"{p}: the {CARD_FILE} beside it describes another model ({card.arch} at "
                f"{card.input_size}, the file holds {embedded.arch} at {embedded.input_size})"
            )
        return p, card
    if embedded is not None:
        return p, embedded
    raise ModelError(f"{p}: no {CARD_FILE} beside this file and no card in its metadata")


def _embedded_card(path: Path) -> ModelCard | None:
    """The card stored in an ONNX file's ``model_card`` metadata, or None."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        meta = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        ).get_modelmeta()
    except Exception as exc:  # onnxruntime's own exception types
        raise ModelError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from exc
    raw = meta.custom_metadata_map.get("model_card")
    if not raw:
        return None
    try:
        return ModelCard.from_dict(json.loads(raw), source=f"{path} (embedded card)")
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: embedded model card is not valid JSON ({exc})") from exc


def _first_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)`` (:func:`~okrainsight.tiling.check_zooms`, :func:`~okrainsight.flips.check_flips`),
    its ValueError as a one-line ConfigError."""
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def card_summary(
    card: ModelCard,
    *,
    source: str | None = None,
    threshold: float | None = None,
    zooms: tuple[float, ...] | None = None,
    seed_threshold: float | None = None,
    flips: tuple[str, ...] | None = None,
) -> dict:
    """The short model description written into ``results.json`` and shown by ``okra models``
    (``threshold``, ``seed_threshold``, ``zooms`` and ``flips``: what the run used when it overrode
    the card's; a seed threshold at or below the threshold is reported as None, a plain threshold)."""
    t = float(card.threshold if threshold is None else threshold)
    seed = effective_seed_threshold(t, card.seed_threshold if seed_threshold is None else seed_threshold)
    return {
        "name": card.name or card.arch,
        "arch": card.arch,
        "input_size": list(card.input_size),
        "threshold": t,
        "seed_threshold": seed,
        "zooms": list(card.zooms if zooms is None else zooms),
        "flips": list(card.flips if flips is None else flips),
        "labels": list(card.labels),
        "version": card.version,
        "created": card.created,
        "metrics": dict(card.metrics),
        "source": source,
    }


def describe_model(spec: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``okra models`` lists for one model: card summary, parameters and file sizes.

    Parameters come from the card (``extra["parameters"]`` or ``metrics["parameters"]``) when
    recorded, else ``None`` (counting them would need torch).
    """
    onnx_path, card = resolve_model(spec)
    folder = onnx_path.parent
    files = {}
    for name in (ONNX_FILE, WEIGHTS_FILE, CARD_FILE):
        f = onnx_path if name == ONNX_FILE else folder / name
        if f.is_file():
            files[f.name] = f.stat().st_size
    params = card.extra.get("parameters", card.metrics.get("parameters"))
    info = card_summary(card, source=str(spec))
    info.update({"path": str(onnx_path), "parameters": params, "files": files})
    return info


# ----------------------------------------------------------------------------------
# The segmenter
# ----------------------------------------------------------------------------------


class Segmenter:
    """An exported model in ONNX Runtime with the card's pre- and post-processing.

    Args:
        onnx_path: the ``.onnx`` file (input ``image`` uint8 ``(1, H, W, 3)``, output ``probability``).
        card: its model card.
        threads: ONNX Runtime intra-op threads (default 2).
        source: how the model was named (for reports).
        grader: an :class:`okrainsight.grading.Grader` that gates each pod and sets its
            ``tender_probability`` (None: pods are not graded).
        zooms: how photos are tiled (:mod:`okrainsight.tiling`); None: the card's ``zooms``.
        flips: mirror images averaged in (:mod:`okrainsight.flips`); None: the card's ``flips``.
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        card: ModelCard,
        *,
        threads: int = DEFAULT_THREADS,
        source: str | None = None,
        grader: Any | None = None,
        zooms: tuple[float, ...] | None = None,
        flips: tuple[str, ...] | None = None,
    ) -> None:
        import onnxruntime as ort

        if int(threads) < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        self.path = Path(onnx_path)
        self.card = card
        self.threads = int(threads)
        self.source = source or str(onnx_path)
        self.grader = grader
        self._zooms: tuple[float, ...] | None = None
        self.zooms = zooms
        self._flips: tuple[str, ...] | None = None
        self.flips = flips
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it ({_first_line(exc)})") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input 'image', found {len(inputs)}")
        inp = inputs[0]
        self._input_name = inp.name
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4:
            raise ModelError(
                f"{self.path}: input {inp.name!r} is {inp.type} {inp.shape}; expected uint8 (1, H, W, 3) "
                "(export with okrainsight.export.export_onnx)"
            )
        w, h = card.input_size
        sh, sw = inp.shape[1], inp.shape[2]
        if (isinstance(sh, int) and sh != h) or (isinstance(sw, int) and sw != w):
            raise ModelError(f"{self.path}: model input is {sw}x{sh} but its card says {w}x{h}")
        outputs = [o.name for o in self._session.get_outputs()]
        self._prob_name = "probability" if "probability" in outputs else outputs[0]

    @classmethod
    def from_path(
        cls,
        spec: str | os.PathLike[str],
        *,
        threads: int = DEFAULT_THREADS,
        grader: Any | None = None,
        zooms: tuple[float, ...] | None = None,
        flips: tuple[str, ...] | None = None,
    ) -> Segmenter:
        """Load a model folder, an ``.onnx`` file (card beside it or embedded) or a built-in name."""
        onnx_path, card = resolve_model(spec)
        return cls(
            onnx_path, card, threads=threads, source=os.fspath(spec), grader=grader, zooms=zooms, flips=flips
        )

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` the network runs at."""
        return self.card.input_size

    @property
    def threshold(self) -> float:
        return float(self.card.threshold)

    @property
    def seed_threshold(self) -> float | None:
        """The card's hysteresis seed threshold (:mod:`okrainsight.hysteresis`), or None."""
        return self.card.seed_threshold

    def summary(self, threshold: float | None = None, seed_threshold: float | None = None) -> dict[str, Any]:
        return card_summary(
            self.card,
            source=self.source,
            threshold=threshold,
            zooms=self.zooms,
            seed_threshold=seed_threshold,
            flips=self.flips,
        )

    @property
    def zooms(self) -> tuple[float, ...]:
        """How photos are tiled (:mod:`okrainsight.tiling`): the constructor's ``zooms`` or the card's."""
        return self._zooms if self._zooms is not None else tuple(self.card.zooms)

    @zooms.setter
    def zooms(self, value: tuple[float, ...] | None) -> None:
        self._zooms = None if value is None else _checked(check_zooms, value)

    @property
    def flips(self) -> tuple[str, ...]:
        """Mirror images averaged in (:mod:`okrainsight.flips`): the constructor's ``flips`` or the card's."""
        return self._flips if self._flips is not None else tuple(self.card.flips)

    @flips.setter
    def flips(self, value: tuple[str, ...] | None) -> None:
        self._flips = None if value is None else _checked(check_flips, value)

    def _run(self, small: np.ndarray) -> np.ndarray:
        """The network on one ``(h, w, 3)`` uint8 image of exactly its input size: ``(h, w)`` float32."""
        (prob,) = self._session.run([self._prob_name], {self._input_name: np.ascontiguousarray(small[None])})
        return np.asarray(prob, dtype=np.float32).reshape(small.shape[:2])

    def predict_probability(
        self,
        image: np.ndarray,
        *,
        zooms: tuple[float, ...] | None = None,
        flips: tuple[str, ...] | None = None,
    ) -> np.ndarray:
        """Okra probability for every pixel of ``image``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            zooms: overrides :attr:`zooms` for this call.
            flips: overrides :attr:`flips` for this call (``()``: one run per tile).

        Returns:
            ``(H, W)`` float32 in 0..1 (:func:`okrainsight.tiling.photo_probability`). The photo is
            covered with tiles of the input's shape at each zoom (zoom 0 = the whole photo squeezed
            to the input size); each tile is resized to the model's input, run (with :attr:`flips`,
            also mirrored and the mean taken), and its probability resized back to the tile
            (bilinear), so thresholding happens at full resolution.
        """
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ConfigError(f"an image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        chosen = self.zooms if zooms is None else _checked(check_zooms, zooms)
        mirrors = self.flips if flips is None else _checked(check_flips, flips)
        return photo_probability(img, self._run, self.input_size, chosen, mirrors)

    def segment(
        self,
        image: np.ndarray,
        *,
        threshold: float | None = None,
        split_touching: bool = True,
        min_area: int | None = None,
        zooms: tuple[float, ...] | None = None,
        seed_threshold: float | None = None,
        flips: tuple[str, ...] | None = None,
    ) -> Segmentation:
        """Segment one photo: probability, mask and pods at the photo's full resolution.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            threshold: overrides the card's threshold (0 < t < 1).
            seed_threshold: overrides the card's hysteresis seed threshold (0 <= s < 1); a value at
                or below the threshold (0, say) turns hysteresis off (a plain threshold).
            split_touching: split touching pods where the mask or the probability allows
                (see :func:`find_pods`).
            min_area: smallest pod in pixels (default: 0.05% of the image, at least 16).
            zooms: tiling for this call only (:mod:`okrainsight.tiling`); None: :attr:`zooms`.
            flips: flip averaging for this call only (:mod:`okrainsight.flips`); None: :attr:`flips`.
        """
        t = self.threshold if threshold is None else float(threshold)
        if not 0.0 < t < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold}")
        seed = self.seed_threshold if seed_threshold is None else float(seed_threshold)
        if seed is not None and not 0.0 <= seed < 1.0:
            raise ConfigError(f"seed threshold must lie in [0, 1), got {seed_threshold}")
        seed = effective_seed_threshold(t, seed)
        prob = self.predict_probability(image, zooms=zooms, flips=flips)
        mask = okra_mask(prob, t, seed)
        pods = find_pods(mask, min_area=min_area, split_touching=split_touching, probability=prob)
        if self.grader is not None:
            from okrainsight.grading.model import apply_grader

            apply_grader(self.grader, image, pods, prob)
        return Segmentation(probability=prob, mask=mask, pods=pods, threshold=t, seed_threshold=seed)


__all__ = [
    "BUILTIN_DIR",
    "Pod",
    "Segmentation",
    "Segmenter",
    "card_summary",
    "describe_model",
    "find_pods",
    "list_builtin_models",
    "okra_found",
    "okra_fraction",
    "pod_length",
    "resolve_model",
]
