"""What one running server holds: the model, the dataset, the labelling session, and the checks.

Everything lives on one :class:`ServerState` object per app (``app.state.okra``), never in module
globals, so two apps in one process (tests) do not share anything.

Coordinates are ``(x, y)`` pixels of the EXIF-oriented image, origin top-left. Images are
``(H, W, 3)`` uint8 RGB; masks are ``(H, W)`` bool.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from okrainsight import __version__
from okrainsight.checkpoint import ModelCard
from okrainsight.dataset import DatasetLayout
from okrainsight.errors import ImageReadError, ImageTooLargeError
from okrainsight.imageio import read_image

log = logging.getLogger(__name__)

#: Leading bytes of the image formats :func:`okrainsight.imageio.read_image` decodes.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"WEBP", 8, "WebP"),
    (b"ftyp", 4, "HEIC/HEIF"),
)


class RequestProblem(Exception):
    """A client error: turned into a JSON ``{"detail": message}`` response with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sniff_image_type(data: bytes) -> str | None:
    """The image format named by the first bytes of ``data`` (``"JPEG"``, ``"PNG"`` ...), else None."""
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return name
    return None


def decode_upload(data: bytes, name: str, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode uploaded bytes by their content (never by file name or declared type).

    Returns:
        ``(H, W, 3)`` uint8 RGB, EXIF orientation applied.

    Raises:
        RequestProblem: 400 empty, 415 not an image type we read, 413 too many pixels,
            422 corrupt or truncated image data.
    """
    if not data:
        raise RequestProblem(400, f"upload {name!r} is empty (0 bytes); send an image file")
    kind = sniff_image_type(data)
    if kind is None:
        raise RequestProblem(
            415, f"upload {name!r} is not an image this server reads (JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC)"
        )
    fd, tmp = tempfile.mkstemp(prefix="okra-upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return read_image(tmp, max_pixels=max_pixels)
        except ImageTooLargeError as exc:
            raise RequestProblem(413, f"upload {name!r}: {exc.problem}") from exc
        except ImageReadError as exc:
            raise RequestProblem(
                422, f"upload {name!r} looks like {kind} but is corrupt: {exc.problem}"
            ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root``; refuse absolute paths, ``..`` escapes and symlink escapes.

    Raises:
        RequestProblem: 400 for an empty or absolute name, 403 when the resolved path
            (symlinks followed) lies outside the resolved ``root``.
    """
    if not relative or "\x00" in relative:
        raise RequestProblem(400, "empty or invalid file name")
    rel = Path(relative)
    if rel.is_absolute() or relative.startswith(("/", "\\")) or (len(relative) > 1 and relative[1] == ":"):
        raise RequestProblem(400, f"{relative!r}: absolute paths are not allowed; name a file in the dataset")
    root_resolved = root.resolve()
    candidate = (root_resolved / rel).resolve()
    if not candidate.is_relative_to(root_resolved):
        raise RequestProblem(403, f"{relative!r} lies outside the dataset folder; refused")
    return candidate


# ----------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------


@dataclass
class ServedModel:
    """The model the server runs and ships to browsers: ``onnx_path`` + ``card`` + the runtime segmenter."""

    onnx_path: Path
    card: ModelCard
    segmenter: Any  # okrainsight.runtime.Segmenter (or anything with .segment(image) -> Segmentation)

    @property
    def card_json(self) -> dict[str, Any]:
        return self.card.to_dict()


def load_served_model(spec: str | os.PathLike[str], *, threads: int = 1) -> ServedModel:
    """Load ``spec`` (a model folder, its ``model.onnx``, or a built-in name such as ``default``).

    ``threads`` is the ONNX Runtime thread count per inference (the server runs a few in parallel).
    """
    from okrainsight.runtime import Segmenter

    seg = Segmenter.from_path(spec, threads=threads)
    return ServedModel(onnx_path=Path(seg.path), card=seg.card, segmenter=seg)


#: The gate thresholds the live page applies itself (area and elongation; see ``static/grade.js``).
PAGE_GATE_KEYS = ("min_area_fraction", "max_area_fraction", "min_elongation", "max_elongation")


@dataclass
class ServedGrader:
    """The tip-break grader whose pod-crop CNN the live page runs in the browser.

    ``grader`` is an :class:`okrainsight.grading.model.Grader`; ``cnn_path`` is its ``cnn.onnx``
    (input ``crop`` float32 ``(N, 3, 32, 64)`` RGB 0..1, output ``tender_probability`` ``(N, 1)``),
    or None when the grader has no CNN (the page then shows no verdict).
    """

    grader: Any
    source: str

    @property
    def cnn_path(self) -> Path | None:
        path = getattr(self.grader.cnn, "path", None)
        return Path(path) if path is not None and Path(path).is_file() else None

    def page_info(self) -> dict[str, Any]:
        """What the live page needs: CNN URL, verdict threshold and the area/elongation gate."""
        g = self.grader
        has_cnn = self.cnn_path is not None
        gate = g.gate.to_dict()
        return {
            "grader": g.card.get("name") or Path(self.source).name,
            "source": self.source,
            "cnn": has_cnn,
            "cnn_url": "/grader/cnn.onnx" if has_cnn else None,
            "cnn_input": {"name": "crop", "shape": [3, 32, 64], "range": "RGB 0..1, background 0"},
            "cnn_output": "tender_probability",
            "threshold": float(g.threshold),
            "gate": {k: float(gate[k]) for k in PAGE_GATE_KEYS},
            "message": None if has_cnn else f"the grader {self.source} has no CNN (cnn.onnx): no verdict",
        }


def load_served_grader(spec: str | os.PathLike[str] | None) -> ServedGrader | None:
    """The grader for the live page: a grader folder, ``"default"`` (the built-in grader; None when
    it is not installed) or None / ``"none"`` (no grader).

    Raises:
        ModelError: a named grader folder that cannot be loaded.
    """
    if spec is None or os.fspath(spec).lower() == "none":
        return None
    from okrainsight.grading.model import grader_dir, resolve_grader

    grader = resolve_grader(spec)
    if grader is None:
        return None
    return ServedGrader(grader=grader, source=str(grader_dir(spec)))


def segment_entry(name: str, seg: Any) -> dict[str, Any]:
    """The ``results.json`` image entry of ``okra segment`` for one segmentation of an uploaded image."""
    mask = np.asarray(seg.mask, dtype=bool)
    h, w = mask.shape
    return {
        "path": name,
        "mask": None,
        "width": int(w),
        "height": int(h),
        "okra_found": bool(seg.pods),
        "okra_fraction": round(float(mask.mean()), 6),
        "pods": [p.to_dict() for p in seg.pods],
        "error": None,
    }


# ----------------------------------------------------------------------------------
# The labelling session
# ----------------------------------------------------------------------------------


@dataclass
class LabelSession:
    """One teacher instance whose image embedding follows the image being labelled.

    ``set_image`` runs once per image (the expensive part for SAM); each click then calls
    ``predict`` only. A lock serialises clicks, since teachers are not thread-safe.
    """

    teacher_name: str
    teacher: Any = None
    stem: str | None = None
    image: np.ndarray | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    last_key: tuple | None = None
    last_mask: np.ndarray | None = None
    last_score: float = 0.0

    def _ensure_teacher(self) -> None:
        if self.teacher is None:
            from okrainsight.teachers import create_teacher

            self.teacher = create_teacher(self.teacher_name)

    def describe(self) -> dict[str, Any]:
        """Provenance of the teacher for the manifest (``name``, ``checkpoint_sha256`` ...)."""
        if self.teacher is None or self.teacher == "fallback":
            return {
                "name": self.teacher_name,
                "checkpoint_sha256": None,
                "fallback": self.teacher == "fallback",
            }
        return dict(self.teacher.describe())

    def predict(
        self, stem: str, image_path: Path, points: np.ndarray, labels: np.ndarray, box: np.ndarray | None
    ) -> tuple[np.ndarray, float]:
        """Mask for the clicks on image ``stem``: ``((H, W) bool, score)``; points (K, 2) (x, y) float."""
        with self.lock:
            self._ensure_teacher()
            if self.stem != stem or self.image is None:
                self.image = read_image(image_path)
                self.stem = stem
                self.teacher.set_image(self.image)
            h, w = self.image.shape[:2]
            if len(points) and not (
                (points[:, 0] >= 0).all()
                and (points[:, 0] < w).all()
                and (points[:, 1] >= 0).all()
                and (points[:, 1] < h).all()
            ):
                raise RequestProblem(400, f"a point lies outside the {w}x{h} image of {stem!r}")
            key = (stem, points.tobytes(), labels.tobytes(), None if box is None else box.tobytes())
            if key == self.last_key and self.last_mask is not None:
                return self.last_mask, self.last_score
            result = self.teacher.predict(self.image, points, labels, box=box)
            mask, score = np.asarray(result.mask, dtype=bool), float(result.score)
            self.last_key, self.last_mask, self.last_score = key, mask, score
            return mask, score


@dataclass
class ServerState:
    """Per-app state: configuration, model, dataset, label session and the inference pool."""

    model: ServedModel | None
    model_error: str | None
    data: DatasetLayout | None
    label: LabelSession
    max_upload_bytes: int
    request_timeout_s: float
    static_dir: Path
    executor: ThreadPoolExecutor
    work_dir: Path
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    version: str = __version__
    grader: ServedGrader | None = None
    grader_error: str | None = None

    def grader_info(self) -> dict[str, Any]:
        """``/grader/info.json``: the served grader for the live page, or why there is none."""
        if self.grader is not None:
            return self.grader.page_info()
        return {
            "grader": None,
            "cnn": False,
            "cnn_url": None,
            "message": f"no grader: {self.grader_error or 'okra serve was started with --grader none'}",
        }

    def require_model(self) -> ServedModel:
        if self.model is None:
            raise RequestProblem(503, f"no model is loaded: {self.model_error}")
        return self.model

    def require_data(self) -> DatasetLayout:
        if self.data is None:
            raise RequestProblem(409, "the server was started without a dataset; restart with --data DIR")
        return self.data

    def image_path(self, stem: str) -> Path:
        """The image file of ``stem`` inside the dataset, symlinks resolved and checked."""
        data = self.require_data()
        if not stem or "/" in stem or "\\" in stem or stem in (".", ".."):
            raise RequestProblem(400, f"{stem!r} is not an image id (use a stem from GET /api/images)")
        for p in data.image_paths():
            if p.stem == stem:
                return resolve_inside(data.root, str(p.relative_to(data.root)))
        raise RequestProblem(404, f"no image {stem!r} in the dataset")
