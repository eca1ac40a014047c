"""The okra / not-okra gate: give a verdict only for plausible pods.

A segmented component is a *plausible pod* when all of these hold:

* area: at least ``min_area_fraction`` and at most ``max_area_fraction`` of the photo;
* shape: elongated (``length / max_width`` in ``[min_elongation, max_elongation]``, where
  length is measured along the pod) and compact around its curve (solidity, the area over
  the convex hull's area, at least ``min_solidity``: ragged blobs fail);
* okra score: the mean okra probability over the component's pixels is at least
  ``min_okra_score`` (with a hard mask and no probabilities the score is 1).

With a grader (:meth:`okrainsight.grading.model.Grader.grade_pod`) the pod's features face
three more tests: okra colour (CIELAB mean hue angle green, ``min_green_hue..max_green_hue``
degrees, or burgundy, ``min_red_hue..max_red_hue``, at a mean chroma of at least ``min_chroma``),
novelty (the mean squared standardised distance to the grader's training pods at most the
card's ``max_d2``: "unlike any training pod"), and okra likeness (the okra-vs-look-alike
model's probability, averaged with the okra CNN's when the grader has one, at least the card's
``min_okra_likeness``, chosen in training to keep 90% of rendered pods past the other tests).

``okra_found`` is true for a photo when at least one component passes; only passing pods get
a ``tender_probability``. The thresholds are fitted loosely to rendered okra and leave room for
real photos: lying pods measure 4.7..9 in elongation, but pods in piles or pointing at the
camera look stubbier (2.2..2.8 for one pile pod in five at 256x192), hence ``min_elongation``
2.2; solidity 0.63..1 at 192 px. Measured rates: ``bench/bench_gate.py`` and ``docs/grading.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from okrainsight.grading.features import pod_shape_stats


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate (see the module docstring)."""

    min_area_fraction: float = 0.002
    max_area_fraction: float = 0.6
    min_elongation: float = 2.2
    max_elongation: float = 20.0
    min_solidity: float = 0.55
    min_okra_score: float = 0.6
    min_chroma: float = 10.0
    min_green_hue: float = 80.0
    max_green_hue: float = 165.0
    min_red_hue: float = -30.0
    # burgundy pods sit at +10..+40 degrees under warm light (v0.3's gate, up to 0, turned away
    # 9 of 10 rendered ones); red chillies and tomatoes from about +35 on
    max_red_hue: float = 30.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GateConfig:
        known = cls.__dataclass_fields__
        return cls(**{k: float(v) for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class GateDecision:
    """The gate's answer for one component.

    Attributes:
        passed: True when the component is a plausible okra pod.
        reason: ``"ok"`` or the first failed test (``"too small"``, ``"too large"``,
            ``"not elongated"``, ``"too thin"``, ``"ragged shape"``, ``"low okra score"``).
        okra_score: mean okra probability over the component (0..1).
        stats: the shape numbers measured (see :func:`okrainsight.grading.features.pod_shape_stats`).
    """

    passed: bool
    reason: str
    okra_score: float
    stats: dict[str, float]


def colour_plausible(features: np.ndarray, config: GateConfig | None = None) -> bool:
    """Whether a pod's feature vector (see :data:`~okrainsight.grading.features.FEATURE_NAMES`) has an
    okra colour: green or burgundy mean hue at a sufficient chroma."""
    from okrainsight.grading.features import FEATURE_NAMES

    cfg = config or GateConfig()
    hue = float(features[FEATURE_NAMES.index("hue_angle")])
    chroma = float(features[FEATURE_NAMES.index("chroma_mean")])
    green = cfg.min_green_hue <= hue <= cfg.max_green_hue
    red = cfg.min_red_hue <= hue <= cfg.max_red_hue
    return chroma >= cfg.min_chroma and (green or red)


def okra_found(decisions: list[Any]) -> bool:
    """True when at least one of ``decisions`` (:class:`GateDecision` or objects with a ``gate``
    attribute holding one, like :class:`~okrainsight.grading.model.PodGrade`) passed."""
    return any(getattr(d, "gate", d).passed for d in decisions)


def okra_score(pod_mask: np.ndarray, probability: np.ndarray | None) -> float:
    """Mean of ``probability`` (same shape as ``pod_mask``, 0..1) over the pod; 1.0 without one."""
    if probability is None:
        return 1.0
    m = np.asarray(pod_mask) > 0
    if not m.any():
        return 0.0
    return float(np.asarray(probability, np.float64)[m].mean())


def gate_pod(
    pod_mask: np.ndarray,
    image_shape: tuple[int, ...],
    *,
    probability: np.ndarray | None = None,
    length_px: float | None = None,
    config: GateConfig | None = None,
) -> GateDecision:
    """Decide whether one component is a plausible okra pod.

    Args:
        pod_mask: the component's mask, ``(h, w)`` bool or 0/255 (a crop is fine).
        image_shape: the photo's shape ``(H, W[, 3])`` (for the area fraction).
        probability: okra probability over the same pixels as ``pod_mask`` (float 0..1), or None.
        length_px: the pod's length along its curve if already measured.
        config: thresholds (default :class:`GateConfig`).
    """
    cfg = config or GateConfig()
    stats = pod_shape_stats(pod_mask, length_px)
    score = okra_score(pod_mask, probability)
    total = float(image_shape[0] * image_shape[1])
    frac = stats["area_px"] / total if total else 0.0
    if frac < cfg.min_area_fraction:
        reason = "too small"
    elif frac > cfg.max_area_fraction:
        reason = "too large"
    elif stats["elongation"] < cfg.min_elongation:
        reason = "not elongated"
    elif stats["elongation"] > cfg.max_elongation:
        reason = "too thin"
    elif stats["solidity"] < cfg.min_solidity:
        reason = "ragged shape"
    elif score < cfg.min_okra_score:
        reason = "low okra score"
    else:
        reason = "ok"
    return GateDecision(passed=reason == "ok", reason=reason, okra_score=score, stats=stats)


__all__ = [
    "GateConfig",
    "GateDecision",
    "colour_plausible",
    "gate_pod",
    "okra_found",
    "okra_score",
]
