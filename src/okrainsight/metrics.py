"""Segmentation metrics on binary masks: IoU, Dice, precision, recall, boundary F-score.

Pure numpy (plus OpenCV for the boundary tolerance), no torch, so the ONNX runtime
and the benchmarks can use them. Masks are ``(H, W)`` arrays; any non-zero value
(or ``True``) is okra. Predicted and reference masks must have the same shape.

Conventions for empty masks (a photo without okra is common in our data):

* a ratio whose denominator is zero is ``1.0`` when the prediction and the
  reference are both empty (nothing to find, nothing claimed) and ``0.0``
  otherwise; e.g. precision of an empty prediction against a non-empty reference
  is 0, IoU of two empty masks is 1;
* overall scores are *pooled* (micro): true/false positive/negative pixel counts are
  summed over all images first, which is what ``torchmetrics`` computes when it
  accumulates over batches; the per-image mean (macro) is reported beside them.
  The boundary F-score has no pooled form here; its overall value is the mean over
  images (as in DAVIS).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

METRIC_NAMES = ("iou", "dice", "precision", "recall", "boundary_f")


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) mask, got shape {arr.shape}")
    return arr.astype(bool)


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_bool(pred, "pred")
    t = _as_bool(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and reference {t.shape} masks differ in shape")
    return p, t


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num) / float(den)


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of one comparison (or of many, summed)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def both_empty(self) -> bool:
        return self.tp + self.fp + self.fn == 0

    def iou(self) -> float:
        return _ratio(self.tp, self.tp + self.fp + self.fn, self.both_empty)

    def dice(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, self.both_empty)

    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp, self.both_empty)

    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn, self.both_empty)

    def positive_fraction(self) -> float:
        """Share of pixels predicted okra (the false-alarm rate on images without okra)."""
        total = self.tp + self.fp + self.fn + self.tn
        return float(self.tp + self.fp) / total if total else 0.0


def confusion(pred: np.ndarray, target: np.ndarray) -> Confusion:
    """Pixel confusion counts of ``pred`` against ``target`` (both ``(H, W)``, non-zero = okra)."""
    p, t = _pair(pred, target)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return Confusion(tp, fp, fn, int(p.size) - tp - fp - fn)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union (Jaccard index) in [0, 1].
    ``pred`` and ``target`` are ``(H, W)`` masks of one shape (bool or uint8; non-zero = okra).
    """
    return confusion(pred, target).iou()


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice coefficient (F1 over pixels) in [0, 1].
    ``pred`` and ``target`` are ``(H, W)`` masks of one shape (bool or uint8; non-zero = okra).
    """
    return confusion(pred, target).dice()


def precision(pred: np.ndarray, target: np.ndarray) -> float:
    """Share (0..1) of predicted okra pixels that are okra in the reference.
    ``pred`` and ``target`` are ``(H, W)`` masks of one shape (bool or uint8; non-zero = okra).
    """
    return confusion(pred, target).precision()


def recall(pred: np.ndarray, target: np.ndarray) -> float:
    """Share (0..1) of reference okra pixels the prediction found.
    ``pred`` and ``target`` are ``(H, W)`` masks of one shape (bool or uint8; non-zero = okra).
    """
    return confusion(pred, target).recall()


def boundary(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner boundary of a mask: okra pixels with a 4-neighbour that is not okra
    (pixels on the image border count as boundary). Returns ``(H, W)`` bool."""
    m = _as_bool(mask, "mask").astype(np.uint8)
    padded = np.pad(m, 1, mode="constant", constant_values=0)
    eroded = cv2.erode(padded, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))[1:-1, 1:-1]
    return (m > 0) & (eroded == 0)


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


def boundary_f_score(pred: np.ndarray, target: np.ndarray, tolerance: int = 2) -> float:
    """Boundary F-score: F1 of boundary pixels matched within ``tolerance`` pixels (Euclidean disk).

    Boundary precision is the share of predicted boundary pixels lying within
    ``tolerance`` of a reference boundary pixel; boundary recall the converse.
    Both masks empty gives 1.0; exactly one empty gives 0.0.
    ``pred`` and ``target`` are ``(H, W)`` masks of one shape (bool or uint8; non-zero = okra).
    """
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0 pixels")
    p, t = _pair(pred, target)
    bp, bt = boundary(p), boundary(t)
    n_p, n_t = int(bp.sum()), int(bt.sum())
    if n_p == 0 and n_t == 0:
        return 1.0
    if n_p == 0 or n_t == 0:
        return 0.0
    kernel = _disk(tolerance)
    near_t = cv2.dilate(bt.astype(np.uint8), kernel) > 0
    near_p = cv2.dilate(bp.astype(np.uint8), kernel) > 0
    b_prec = float(np.count_nonzero(bp & near_t)) / n_p
    b_rec = float(np.count_nonzero(bt & near_p)) / n_t
    if b_prec + b_rec == 0:
        return 0.0
    return 2.0 * b_prec * b_rec / (b_prec + b_rec)


def score_masks(pred: np.ndarray, target: np.ndarray, tolerance: int = 2) -> dict[str, float]:
    """All metrics of one image: ``iou, dice, precision, recall, boundary_f, pred_fraction`` (each
    0..1).
    ``pred`` and ``target`` are ``(H, W)`` masks of one shape (bool or uint8; non-zero = okra).
    """
    c = confusion(pred, target)
    return {
        "iou": c.iou(),
        "dice": c.dice(),
        "precision": c.precision(),
        "recall": c.recall(),
        "boundary_f": boundary_f_score(pred, target, tolerance),
        "pred_fraction": c.positive_fraction(),
    }


@dataclass
class MetricAccumulator:
    """Collects per-image scores and pooled counts; ``summary()`` gives the overall figures.

    Example::

        acc = MetricAccumulator(tolerance=2)
        for pred, ref in pairs:
            row = acc.add(pred, ref)     # per-image dict
        overall = acc.summary()          # pooled iou/dice/precision/recall + means
    """

    tolerance: int = 2
    total: Confusion = field(default_factory=Confusion)
    rows: list[dict[str, float]] = field(default_factory=list)

    def add(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        c = confusion(pred, target)
        self.total = self.total + c
        row = score_masks(pred, target, self.tolerance)
        self.rows.append(row)
        return row

    def summary(self) -> dict[str, float]:
        """Pooled ``iou, dice, precision, recall``; mean ``boundary_f``; ``mean_<metric>`` per image."""
        out: dict[str, float] = {
            "images": float(len(self.rows)),
            "iou": self.total.iou(),
            "dice": self.total.dice(),
            "precision": self.total.precision(),
            "recall": self.total.recall(),
            "boundary_f": _mean(r["boundary_f"] for r in self.rows),
            "pred_fraction": self.total.positive_fraction(),
        }
        for name in METRIC_NAMES:
            out[f"mean_{name}"] = _mean(r[name] for r in self.rows)
        return out


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return float(np.mean(vals)) if vals else float("nan")


__all__ = [
    "METRIC_NAMES",
    "Confusion",
    "MetricAccumulator",
    "boundary",
    "boundary_f_score",
    "confusion",
    "dice",
    "iou",
    "precision",
    "recall",
    "score_masks",
]
