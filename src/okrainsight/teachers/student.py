"""A trained okra model as a teacher (self-training), on ONNX Runtime via :mod:`okrainsight.runtime`.

The student segments the whole image; prompts then *select* from its prediction:
the connected okra regions that contain a positive point (all regions when only a box
is given, cropped to the box), minus regions under a negative point. So a person's
clicks still decide which pods a label holds, and the student's probability becomes
the soft map.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.errors import ModelError
from okrainsight.imageio import sha256_file
from okrainsight.teachers.base import (
    Teacher,
    TeacherResult,
    check_image,
    check_prompts,
    image_key,
    register_teacher,
)


def _segmenter(model: Any) -> Any:
    """A runtime Segmenter from a model folder (or the object itself when already built)."""
    if not isinstance(model, str | os.PathLike):
        return model
    try:
        from okrainsight.runtime import Segmenter
    except ImportError as exc:
        raise ModelError("the student teacher needs okrainsight.runtime (ONNX Runtime segmenter)") from exc
    return Segmenter.from_path(Path(model))


def load_student_mask_fn(model: str | os.PathLike[str] | Any) -> Callable[[np.ndarray], np.ndarray]:
    """``image (H, W, 3) uint8 RGB -> (H, W) bool`` okra mask of a trained model folder."""
    seg = _segmenter(model)

    def predict_mask(image: np.ndarray) -> np.ndarray:
        return np.asarray(seg.segment(image).mask) > 0

    return predict_mask


class StudentTeacher(Teacher):
    """A trained student as teacher.

    Args:
        model: a model folder (``card.json`` + ``model.onnx``) or a built ``Segmenter``.
        threshold: probability threshold of the mask (default: the model card's).
    """

    name = "student"

    def __init__(self, model: Any, *, threshold: float | None = None, stability_offset: float = 0.15) -> None:
        if model is None:
            raise ModelError("the student teacher needs a trained model folder (--checkpoint DIR)")
        self.model_path = str(model) if isinstance(model, str | os.PathLike) else None
        self.segmenter = _segmenter(model)
        self.threshold = threshold
        self.stability_offset = float(stability_offset)
        self._cache: tuple[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        sha = None
        if self.model_path:
            onnx = Path(self.model_path) / "model.onnx"
            if onnx.is_file():
                sha = sha256_file(onnx)
        return {"name": self.name, "model": self.model_path, "checkpoint_sha256": sha}

    def _segment(self, image: np.ndarray) -> Any:
        key = image_key(image)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.segmenter.segment(image, threshold=self.threshold))
        return self._cache[1]

    def set_image(self, image: np.ndarray) -> None:
        self._segment(check_image(image))

    def predict(
        self,
        image: np.ndarray,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        point_labels: Sequence[int] | np.ndarray | None,
        box: Sequence[float] | np.ndarray | None = None,
    ) -> TeacherResult:
        img = check_image(image)
        pts, labels, bx = check_prompts(img, points, point_labels, box)
        seg = self._segment(img)
        prob = np.asarray(seg.probability, np.float32)
        thr = float(seg.threshold)
        full = np.asarray(seg.mask, bool)
        n, lab = cv2.connectedComponents(full.astype(np.uint8), connectivity=8)
        xi = np.round(pts[:, 0]).astype(int)
        yi = np.round(pts[:, 1]).astype(int)
        pos = {int(lab[y, x]) for x, y, v in zip(xi, yi, labels, strict=True) if v == 1} - {0}
        neg = {int(lab[y, x]) for x, y, v in zip(xi, yi, labels, strict=True) if v == 0} - {0}
        keep = (pos or set(range(1, n))) - neg
        mask = np.isin(lab, sorted(keep)) if keep else np.zeros_like(full)
        if bx is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in bx)
            crop = np.zeros_like(mask)
            crop[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
            mask &= crop
        soft = np.where(mask, prob, np.minimum(prob, thr * 0.999)).astype(np.float32)
        inner = float((soft >= thr + self.stability_offset).sum())
        outer = float((soft >= thr - self.stability_offset).sum())
        agree = float((mask[yi, xi] == (labels == 1)).mean()) if len(pts) else 1.0
        conf = float(np.abs(prob[mask] - 0.5).mean() * 2) if mask.any() else 0.0
        score = agree * conf
        return TeacherResult(
            mask=mask,
            probability=soft,
            score=score,
            candidates=[mask, full],
            candidate_scores=[score, agree * conf * (1.0 if keep == set(range(1, n)) else 0.5)],
            chosen=0,
            stability=inner / outer if outer else 0.0,
        )


@register_teacher("student")
def build_student_teacher(**kwargs: Any) -> StudentTeacher:
    """``student``: a trained okra model folder (``model=DIR``) selecting pods by the prompts."""
    for key in ("checkpoint", "model_type", "device"):
        kwargs.pop(key, None)
    return StudentTeacher(**kwargs)
