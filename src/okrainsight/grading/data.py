"""Labelled photos for the grader: where the labels come from, which okra each photo shows,
and the pod in each photo.

Labels, in order of precedence (the first source that labels a photo wins):

1. ``DATA/labels.csv`` with the columns ``stem,grade`` (``tender`` or ``tough``) for the
   photos in ``DATA/images/`` (the dataset format, see ``docs/dataset.md``);
2. class folders anywhere under ``DATA``: ``tender/`` and ``tough/`` (``GoodOkra/`` and
   ``BadOkra/`` accepted; names compared case-insensitively);
3. file names: ``tipbreak`` in the stem means tender, ``tipbend`` tough (the original
   project's ``okra_12_tipbreak_int1``).

Photos without a label are skipped (and counted). Photos are grouped by okra with
:func:`okrainsight.dataset.group_keys` (``groups.csv``, else the stem up to its first run of
digits, so ``okra_12_tipbreak_int1`` and ``okra_12_tipbend_int2`` are one okra; rendered
scenes are each their own okra).

Pods: a photo's mask comes from ``DATA/masks/<stem>.png`` when it exists, else from a
segmentation model (:class:`okrainsight.runtime.Segmenter`). A label belongs to the photo,
so the photo's largest plausible pod (see :mod:`okrainsight.grading.gate`) carries it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from okrainsight.dataset import DatasetLayout, group_keys, load_labels
from okrainsight.errors import DatasetError
from okrainsight.imageio import is_image_file

log = logging.getLogger(__name__)

#: Class folder names (lower case) and the grade they mean.
CLASS_FOLDERS = {"tender": "tender", "tough": "tough", "goodokra": "tender", "badokra": "tough"}
_TIPBREAK = re.compile(r"tip[-_ ]?break", re.IGNORECASE)
_TIPBEND = re.compile(r"tip[-_ ]?bend", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledPhoto:
    """One labelled photo.

    Attributes:
        path: the image file.
        stem: its file stem (``masks/<stem>.png`` is looked up by it).
        grade: ``"tender"`` or ``"tough"``.
        group: the okra it shows (photos with the same group are one okra).
        source: where the label came from: ``"labels.csv"``, ``"folder"`` or ``"filename"``.
    """

    path: Path
    stem: str
    grade: str
    group: str
    source: str

    @property
    def tender(self) -> bool:
        return self.grade == "tender"


def grade_from_filename(name: str) -> str | None:
    """``"tender"`` for ``tipbreak`` in ``name``, ``"tough"`` for ``tipbend``, else None."""
    brk, bend = bool(_TIPBREAK.search(name)), bool(_TIPBEND.search(name))
    if brk == bend:
        return None
    return "tender" if brk else "tough"


def grade_from_folders(path: Path, root: Path) -> str | None:
    """The grade of the nearest class folder between ``root`` and ``path``, or None."""
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        parts = path.parts[:-1]
    for part in reversed(parts):
        g = CLASS_FOLDERS.get(part.lower())
        if g is not None:
            return g
    return None


def _all_images(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d not in ("masks", "soft", "instances")
        )
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if not f.startswith(".") and is_image_file(p):
                out.append(p)
    return out


def collect_labelled_photos(data: str | os.PathLike[str]) -> list[LabelledPhoto]:
    """Every labelled photo under ``data`` (see the module docstring), sorted by path.

    Raises:
        DatasetError: ``data`` is not a folder, a ``labels.csv`` is invalid, two photos share a
            stem, or no photo has a label.
    """
    root = Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder does not exist")
    layout = DatasetLayout(root)
    csv_labels: dict[str, str] = load_labels(layout.labels_path) if layout.labels_path.exists() else {}
    found: list[tuple[Path, str, str, str]] = []
    seen: dict[str, Path] = {}
    unlabelled = 0
    for p in _all_images(root):
        stem = p.stem
        if stem in csv_labels and p.parent == layout.images_dir:
            grade, source = csv_labels[stem], "labels.csv"
        elif (g := grade_from_folders(p, root)) is not None:
            grade, source = g, "folder"
        elif (g := grade_from_filename(stem)) is not None:
            grade, source = g, "filename"
        else:
            unlabelled += 1
            continue
        if stem in seen:
            raise DatasetError(
                f"{p}: stem {stem!r} also names {seen[stem]}; rename one so masks are unambiguous"
            )
        seen[stem] = p
        found.append((p, stem, grade, source))
    if unlabelled:
        log.info("%s: %d photo(s) without a label skipped", root, unlabelled)
    if not found:
        raise DatasetError(
            f"{root}: no labelled photos (use labels.csv, tender/ and tough/ folders, "
            "or tipbreak/tipbend in file names)"
        )
    groups = group_keys(root, [s for _, s, _, _ in found])
    return [LabelledPhoto(path=p, stem=s, grade=g, group=groups[s], source=src) for p, s, g, src in found]


# ----------------------------------------------------------------------------------
# Pods of labelled photos
# ----------------------------------------------------------------------------------


@dataclass
class PodSample:
    """One graded pod: features, label and where it came from (``crop``: the CNN input, when kept)."""

    photo: LabelledPhoto
    features: np.ndarray
    okra_score: float
    bbox: list[int]
    crop: np.ndarray | None = None


def segment_photo(
    image: np.ndarray, photo: LabelledPhoto, data: Path, segmenter: Any | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo's okra mask ``(H, W)`` bool and probability (None for a mask file)."""
    from okrainsight.imageio import read_mask

    mask_path = DatasetLayout(data).mask_path(photo.stem)
    if mask_path.is_file():
        m = read_mask(mask_path) > 0
        if m.shape != image.shape[:2]:
            raise DatasetError(
                f"{mask_path}: mask is {m.shape[1]}x{m.shape[0]}, image {image.shape[1]}x{image.shape[0]}"
            )
        return m, None
    if segmenter is None:
        raise DatasetError(
            f"{photo.path}: no mask at {mask_path} and no segmentation model given (use --model)"
        )
    result = segmenter.segment(image)
    return result.mask, result.probability


def pod_sample(
    photo: LabelledPhoto,
    data: Path,
    segmenter: Any | None,
    gate: Any | None = None,
    *,
    keep_crop: bool = False,
) -> PodSample | None:
    """Read, segment and measure the labelled pod of ``photo``; None when no plausible pod is found."""
    from okrainsight.grading.features import pod_features
    from okrainsight.grading.gate import gate_pod
    from okrainsight.imageio import read_image
    from okrainsight.runtime import find_pods

    image = read_image(photo.path)
    mask, prob = segment_photo(image, photo, data, segmenter)
    for pod in find_pods(mask, probability=prob):  # split as okra segment splits
        x0, y0, x1, y1 = pod.bbox
        p = None if prob is None else prob[y0:y1, x0:x1]
        decision = gate_pod(pod.crop, image.shape, probability=p, length_px=pod.length_px, config=gate)
        if not decision.passed:
            log.debug("%s: component at %s rejected (%s)", photo.path, pod.bbox, decision.reason)
            continue
        feats = pod_features(image, pod.crop, bbox=pod.bbox, length_px=pod.length_px)
        crop = None
        if keep_crop:
            from okrainsight.grading.cnn import cnn_input

            crop = cnn_input(image, pod.crop, pod.bbox)
        return PodSample(photo, feats, decision.okra_score, list(pod.bbox), crop)
    return None


__all__ = [
    "CLASS_FOLDERS",
    "LabelledPhoto",
    "PodSample",
    "collect_labelled_photos",
    "grade_from_filename",
    "grade_from_folders",
    "pod_sample",
    "segment_photo",
]
