"""The teacher seam: a model that turns point/box prompts on one image into a mask.

A teacher only implements :meth:`Teacher.predict` (and optionally a cheaper
:meth:`Teacher.set_image`); the labelling loop in :mod:`okrainsight.labeling` owns
reading, writing, provenance and quality control (autodistill's split between a
base model and the base class that runs the loop).

Conventions
-----------
* ``image``: ``(H, W, 3)`` uint8 RGB, the oriented full-resolution image as
  :func:`okrainsight.imageio.read_image` returns it.
* ``points``: ``(K, 2)`` float, ``(x, y)`` pixels of that image, origin top-left.
* ``point_labels``: ``(K,)`` int, 1 = on okra (positive), 0 = background (negative).
* ``box``: ``[x0, y0, x1, y1]`` pixels (inclusive corners) or ``None``.

Register a builder with ``@register_teacher("name")``; :func:`create_teacher` builds it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from okrainsight.errors import ConfigError, ModelError
from okrainsight.metrics import iou


@dataclass
class TeacherResult:
    """What a teacher returns for one prompt set on one image.

    Attributes:
        mask: ``(H, W)`` bool, okra = True; the chosen candidate.
        probability: ``(H, W)`` float32 in 0..1, the teacher's soft map for ``mask``.
        score: the teacher's own confidence in the chosen mask (SAM: predicted IoU), 0..1.
        candidates: every candidate mask, ``(H, W)`` bool each (``mask`` is one of them).
        candidate_scores: one score per candidate.
        chosen: index of ``mask`` in ``candidates``.
        stability: IoU of the masks thresholded a little above and below the decision
            threshold (1.0 = the mask does not move when the threshold moves).
    """

    mask: np.ndarray
    probability: np.ndarray
    score: float
    candidates: list[np.ndarray] = field(default_factory=list)
    candidate_scores: list[float] = field(default_factory=list)
    chosen: int = 0
    stability: float = 1.0


def image_key(image: np.ndarray) -> str:
    """A content hash of an image array (shape, dtype and pixels): the embedding-cache key."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((arr.shape, arr.dtype.str)).encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def check_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous ``(H, W, 3)`` uint8 array or raise :class:`ConfigError`."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ConfigError(f"a teacher needs an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def check_prompts(
    image: np.ndarray,
    points: Sequence[Sequence[float]] | np.ndarray | None,
    point_labels: Sequence[int] | np.ndarray | None,
    box: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate prompts against ``image``.

    Returns:
        ``points`` ``(K, 2)`` float32 (x, y), ``labels`` ``(K,)`` int32, ``box`` ``(4,)``
        float32 or None.

    Raises:
        ConfigError: wrong shapes, labels other than 0/1, points outside the image,
            an empty box, or no positive point and no box.
    """
    h, w = image.shape[:2]
    pts = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
    labels = (
        np.ones(len(pts), np.int32) if point_labels is None else np.asarray(point_labels, np.int32).ravel()
    )
    if len(labels) != len(pts):
        raise ConfigError(f"{len(pts)} points but {len(labels)} point labels; give one label per point")
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("point labels must be 1 (okra) or 0 (background)")
    outside = (pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] > h - 1)
    if outside.any():
        raise ConfigError(f"a prompt point lies outside the {w}x{h} image; points are (x, y) pixels")
    bx = None
    if box is not None:
        bx = np.asarray(box, np.float32).ravel()
        if bx.shape != (4,) or bx[2] <= bx[0] or bx[3] <= bx[1]:
            raise ConfigError(f"box {list(map(float, bx))} must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    if not (labels == 1).any() and bx is None:
        raise ConfigError("a prompt needs at least one positive point (label 1) or a box")
    return pts, labels, bx


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two same-shape boolean masks (1.0 when both are empty); see :func:`okrainsight.metrics.iou`."""
    return iou(a, b)


class Teacher(ABC):
    """Base class of every teacher. Subclasses implement :meth:`predict`.

    Attributes:
        name: the registry name, recorded in the provenance of every label.
    """

    name: str = "teacher"

    def set_image(self, image: np.ndarray) -> None:  # noqa: B027 - optional hook, no-op by default
        """Prepare ``image`` (``(H, W, 3)`` uint8 RGB) for several :meth:`predict` calls.

        Teachers with an expensive per-image step (SAM's image embedding) compute it
        here, once per image; calling again with the same pixels is free.
        """

    @abstractmethod
    def predict(
        self,
        image: np.ndarray,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        point_labels: Sequence[int] | np.ndarray | None,
        box: Sequence[float] | np.ndarray | None = None,
    ) -> TeacherResult:
        """Segment the object the prompts point at (conventions in the module docstring)."""

    def describe(self) -> dict[str, Any]:
        """Provenance of this teacher for the manifest: at least ``name`` and ``checkpoint_sha256``."""
        return {"name": self.name, "checkpoint_sha256": None}


_REGISTRY: dict[str, Callable[..., Teacher]] = {}


def register_teacher(name: str) -> Callable[[Callable[..., Teacher]], Callable[..., Teacher]]:
    """Decorator registering ``builder(**kwargs) -> Teacher`` under ``name``.

    Raises:
        ValueError: when ``name`` is already registered (a programming error).
    """

    def decorator(builder: Callable[..., Teacher]) -> Callable[..., Teacher]:
        if name in _REGISTRY:
            raise ValueError(f"teacher {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def _load_builtin() -> None:
    import okrainsight.teachers  # noqa: F401  (the package imports every teacher module)


def list_teachers() -> list[str]:
    """Registered teacher names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_teacher(name: str, **kwargs: Any) -> Teacher:
    """Build the teacher ``name``; keyword arguments that are ``None`` are dropped.

    Raises:
        ModelError: unknown name (the message lists the registered ones).
    """
    _load_builtin()
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ModelError(f"unknown teacher {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}") from None
    return builder(**{k: v for k, v in kwargs.items() if v is not None})
