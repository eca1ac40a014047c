"""Segment Anything (the original OkraInsight teacher) through the official ``segment-anything`` package.

Default behaviour reproduces the original: the prompts go to
``SamPredictor.predict(..., multimask_output=True)`` and the highest-scoring of the
three candidate masks is the label. The image embedding (the expensive ViT pass) is
computed once per image and reused for every prompt on it.

Checkpoints are never downloaded here: the user fetches the official file (see
``docs/labeling.md``), and its size and SHA-256 are checked before it is loaded with
``torch.load(..., weights_only=True)`` (no arbitrary unpickling).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from okrainsight.errors import MissingDependencyError, ModelError
from okrainsight.imageio import sha256_file
from okrainsight.teachers.base import (
    Teacher,
    TeacherResult,
    check_image,
    check_prompts,
    image_key,
    register_teacher,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownCheckpoint:
    """An official SAM checkpoint: file name, exact size in bytes, SHA-256 (hex)."""

    filename: str
    size: int
    sha256: str
    url: str


#: The official checkpoints of facebookresearch/segment-anything (model type -> file).
KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    "vit_h": KnownCheckpoint(
        "sam_vit_h_4b8939.pth",
        2_564_550_879,
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    ),
    "vit_l": KnownCheckpoint(
        "sam_vit_l_0b3195.pth",
        1_249_524_607,
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    ),
    "vit_b": KnownCheckpoint(
        "sam_vit_b_01ec64.pth",
        375_042_383,
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    ),
}


def verify_checkpoint(
    path: str | os.PathLike[str], model_type: str, known: dict[str, KnownCheckpoint] | None = None
) -> str:
    """Check a SAM checkpoint file against the official size and SHA-256 of ``model_type``.

    Returns:
        The file's SHA-256 (hex).

    Raises:
        ModelError: missing file, unknown model type, truncated or oversized file, or
            a SHA-256 that differs from the official one.
    """
    table = KNOWN_CHECKPOINTS if known is None else known
    p = Path(path)
    if model_type not in table:
        raise ModelError(f"unknown SAM model type {model_type!r}; choose one of: {', '.join(sorted(table))}")
    info = table[model_type]
    if not p.is_file():
        raise ModelError(
            f"{p}: SAM checkpoint not found; download {info.filename} from {info.url} (see docs/labeling.md)"
        )
    size = p.stat().st_size
    if size < info.size:
        raise ModelError(
            f"{p}: checkpoint is truncated ({size:,} of {info.size:,} bytes of {info.filename}); "
            "download it again"
        )
    if size != info.size:
        raise ModelError(
            f"{p}: checkpoint has {size:,} bytes but the official {model_type} file {info.filename} "
            f"has {info.size:,}; wrong file or wrong --model-type"
        )
    digest = sha256_file(p)
    if digest != info.sha256:
        raise ModelError(
            f"{p}: SHA-256 {digest} does not match the official {info.filename} ({info.sha256}); "
            "the file is corrupt or not the official checkpoint"
        )
    return digest


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA GPU is present, else ``"mps"`` (Apple) or ``"cpu"``."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _import_sam() -> Any:
    try:
        import segment_anything
    except ImportError as exc:  # pragma: no cover - installed with the [label] extra
        raise MissingDependencyError("segment-anything", "label") from exc
    return segment_anything


def load_sam(
    checkpoint: str | os.PathLike[str],
    model_type: str = "vit_h",
    *,
    device: str = "auto",
    known: dict[str, KnownCheckpoint] | None = None,
) -> tuple[Any, str]:
    """Build the SAM ``model_type`` and load an official checkpoint into it (verified first).

    Returns:
        ``(sam, sha256)``: the ``segment_anything.modeling.Sam`` in eval mode on ``device``,
        and the checkpoint's SHA-256.
    """
    import torch

    sa = _import_sam()
    digest = verify_checkpoint(checkpoint, model_type, known)
    if model_type not in sa.sam_model_registry:
        raise ModelError(f"segment-anything has no model type {model_type!r}")
    sam = sa.sam_model_registry[model_type](checkpoint=None)
    try:
        state = torch.load(Path(checkpoint), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several types for a bad pickle
        raise ModelError(f"{checkpoint}: not a loadable weights-only checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{checkpoint}: checkpoint does not hold a state dict")
    try:
        sam.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{checkpoint}: weights do not fit SAM {model_type} ({first})") from exc
    sam.to(resolve_device(device)).eval()
    return sam, digest


class SamTeacher(Teacher):
    """SAM as a teacher.

    Args:
        model: an already built ``segment_anything.modeling.Sam`` (tests, custom builds);
            when given, ``checkpoint`` and ``model_type`` only label the provenance.
        model_type: ``vit_h`` (the original), ``vit_l`` or ``vit_b``.
        checkpoint: path of the official checkpoint for ``model_type``.
        device: ``auto`` (GPU when present), ``cuda``, ``mps`` or ``cpu``.
        multimask: ask SAM for three candidates and keep the best (the original) or one.
        stability_offset: logit offset for the stability score (SAM's automatic generator uses 1.0).
    """

    name = "sam"

    def __init__(
        self,
        model: Any = None,
        *,
        model_type: str = "vit_h",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str = "auto",
        multimask: bool = True,
        stability_offset: float = 1.0,
        known: dict[str, KnownCheckpoint] | None = None,
    ) -> None:
        sa = _import_sam()
        self.model_type = model_type
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.checkpoint_sha256: str | None = None
        if model is None:
            if checkpoint is None:
                info = KNOWN_CHECKPOINTS.get(model_type)
                hint = f" (the official file is {info.filename}, see docs/labeling.md)" if info else ""
                raise ModelError(f"the sam teacher needs --checkpoint PATH{hint}")
            model, self.checkpoint_sha256 = load_sam(checkpoint, model_type, device=device, known=known)
        else:
            model.eval()
        self.model = model
        self.predictor = sa.SamPredictor(model)
        self.multimask = multimask
        self.stability_offset = float(stability_offset)
        self._image_key: str | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Compute SAM's image embedding for ``image`` unless it is the image already set."""
        img = check_image(image)
        key = image_key(img)
        if key != self._image_key:
            self.predictor.set_image(img, image_format="RGB")
            self._image_key = key

    def predict(
        self,
        image: np.ndarray,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        point_labels: Sequence[int] | np.ndarray | None,
        box: Sequence[float] | np.ndarray | None = None,
    ) -> TeacherResult:
        """Run SAM on the prompts; points are ``(x, y)`` pixels of the full-resolution ``image``
        (SamPredictor rescales them to its 1024-pixel input itself)."""
        import torch
        from segment_anything.utils.amg import calculate_stability_score

        img = check_image(image)
        pts, labels, bx = check_prompts(img, points, point_labels, box)
        self.set_image(img)
        logits, scores, _ = self.predictor.predict(
            point_coords=pts if len(pts) else None,
            point_labels=labels if len(pts) else None,
            box=bx,
            multimask_output=self.multimask,
            return_logits=True,
        )
        thr = float(self.model.mask_threshold)
        masks = logits > thr
        chosen = int(np.argmax(scores))
        stab = calculate_stability_score(
            torch.from_numpy(np.ascontiguousarray(logits[chosen : chosen + 1], np.float32)),
            thr,
            self.stability_offset,
        )
        stability = float(torch.nan_to_num(stab, nan=0.0)[0])
        prob = (1.0 / (1.0 + np.exp(-np.clip(logits[chosen], -50, 50)))).astype(np.float32)
        return TeacherResult(
            mask=masks[chosen].copy(),
            probability=prob,
            score=float(scores[chosen]),
            candidates=[m.copy() for m in masks],
            candidate_scores=[float(s) for s in scores],
            chosen=chosen,
            stability=stability,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_type": self.model_type,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "multimask": self.multimask,
        }


@register_teacher("sam")
def build_sam_teacher(**kwargs: Any) -> SamTeacher:
    """``sam``: Segment Anything; needs ``checkpoint=PATH`` or ``model=``, and a ``model_type``."""
    return SamTeacher(**kwargs)
