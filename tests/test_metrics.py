"""Metric values on hand-made masks, and agreement with torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex, BinaryPrecision, BinaryRecall

from okrainsight.metrics import (
    MetricAccumulator,
    boundary,
    boundary_f_score,
    confusion,
    dice,
    iou,
    precision,
    recall,
    score_masks,
)

torch.set_num_threads(1)


def box(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 255
    return m


def test_overlapping_rectangles() -> None:
    # target 4x4 = 16 px, prediction 4x4 shifted by 2 columns: overlap 4x2 = 8 px
    target = box(10, 10, 2, 6, 2, 6)
    pred = box(10, 10, 2, 6, 4, 8)
    c = confusion(pred, target)
    assert (c.tp, c.fp, c.fn, c.tn) == (8, 8, 8, 76)
    assert iou(pred, target) == pytest.approx(8 / 24)
    assert dice(pred, target) == pytest.approx(16 / 32)
    assert precision(pred, target) == pytest.approx(0.5)
    assert recall(pred, target) == pytest.approx(0.5)


def test_subset_prediction() -> None:
    target = box(8, 8, 0, 4, 0, 8)  # 32 px
    pred = box(8, 8, 0, 2, 0, 8)  # 16 px inside
    assert precision(pred, target) == 1.0
    assert recall(pred, target) == 0.5
    assert iou(pred, target) == 0.5
    assert dice(pred, target) == pytest.approx(2 * 16 / 48)


def test_empty_masks() -> None:
    empty = np.zeros((5, 5), np.uint8)
    full = np.full((5, 5), 255, np.uint8)
    assert score_masks(empty, empty)["iou"] == 1.0
    assert score_masks(empty, empty)["boundary_f"] == 1.0
    s = score_masks(full, empty)
    assert s["iou"] == 0.0 and s["precision"] == 0.0 and s["pred_fraction"] == 1.0
    s = score_masks(empty, full)
    assert s["recall"] == 0.0 and s["precision"] == 0.0 and s["boundary_f"] == 0.0
    with pytest.raises(ValueError, match="shape"):
        iou(empty, np.zeros((5, 6), np.uint8))


def test_boundary_is_inner_contour() -> None:
    b = boundary(box(7, 7, 1, 6, 1, 6))
    assert b.sum() == 16  # the ring of a 5x5 square
    assert not b[3, 3]


def test_boundary_f_with_tolerance() -> None:
    target = box(40, 40, 10, 30, 10, 30)
    same = target.copy()
    shifted = box(40, 40, 10, 30, 12, 32)  # moved 2 px right
    assert boundary_f_score(same, target, tolerance=0) == 1.0
    assert boundary_f_score(shifted, target, tolerance=2) == 1.0
    # with no tolerance only the top and bottom edges' overlapping stretches (cols 12..29, 18 px each) match
    # plus nothing of the vertical edges: precision = recall = 36/76
    assert boundary_f_score(shifted, target, tolerance=0) == pytest.approx(36 / 76)
    assert 36 / 76 < boundary_f_score(shifted, target, tolerance=1) < 1.0
    with pytest.raises(ValueError):
        boundary_f_score(shifted, target, tolerance=-1)


def test_accumulator_pools_counts_and_means_per_image() -> None:
    acc = MetricAccumulator(tolerance=1)
    r1 = acc.add(box(10, 10, 0, 10, 0, 5), box(10, 10, 0, 10, 0, 10))  # iou 0.5
    r2 = acc.add(np.zeros((4, 4)), np.zeros((4, 4)))  # iou 1 (both empty)
    assert r1["iou"] == 0.5 and r2["iou"] == 1.0
    s = acc.summary()
    assert s["images"] == 2
    assert s["iou"] == pytest.approx(50 / 100)  # pooled: tp 50, fn 50
    assert s["mean_iou"] == pytest.approx(0.75)
    assert s["recall"] == pytest.approx(0.5) and s["precision"] == 1.0


def test_agrees_with_torchmetrics() -> None:
    rng = np.random.default_rng(0)
    preds = [(rng.random((24, 31)) > t).astype(np.uint8) * 255 for t in (0.3, 0.5, 0.8)]
    targets = [(rng.random((24, 31)) > 0.6).astype(np.uint8) * 255 for _ in range(3)]
    acc = MetricAccumulator()
    tm = {
        "iou": BinaryJaccardIndex(),
        "dice": BinaryF1Score(),
        "precision": BinaryPrecision(),
        "recall": BinaryRecall(),
    }
    for p, t in zip(preds, targets, strict=True):
        row = acc.add(p, t)
        pt, tt = torch.from_numpy(p > 0).int(), torch.from_numpy(t > 0).int()
        assert row["iou"] == pytest.approx(BinaryJaccardIndex()(pt, tt).item(), abs=1e-6)
        assert row["dice"] == pytest.approx(BinaryF1Score()(pt, tt).item(), abs=1e-6)
        for m in tm.values():
            m.update(pt, tt)
    summary = acc.summary()
    for name, m in tm.items():
        assert summary[name] == pytest.approx(m.compute().item(), abs=1e-6), name
