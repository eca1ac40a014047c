"""The on-disk dataset format shared by the renderer, the labeller, the trainer and the server.

Layout of a dataset folder ``DATA/`` (see ``docs/dataset.md``)::

    DATA/images/<stem>.<ext>    photos (any format :mod:`okrainsight.imageio` reads)
    DATA/masks/<stem>.png       8-bit single-channel PNG, 0 = background, 255 = okra
    DATA/soft/<stem>.png        optional teacher probability, 0..255 (for distillation)
    DATA/prompts.json           optional {stem: {"points": [[x, y], ...], "labels": [1, 0, ...],
                                                 "box": [x0, y0, x1, y1] | null}}
    DATA/labels.csv             optional "stem,grade" with grade tender|tough
    DATA/manifest.jsonl         one JSON provenance record per line (one per mask)

Points and boxes are pixel coordinates ``(x, y)`` of the oriented image, origin at
the top-left pixel. A *stem* is the image file name without its extension; stems
are unique within a dataset.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from okrainsight.errors import DatasetError
from okrainsight.imageio import atomic_write_text, is_image_file

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
MASKS_DIR = "masks"
SOFT_DIR = "soft"
PROMPTS_FILE = "prompts.json"
LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.jsonl"
GRADES = ("tender", "tough")


@dataclass(frozen=True)
class DatasetLayout:
    """Paths of one dataset folder. Creating the object touches nothing on disk."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    @property
    def masks_dir(self) -> Path:
        return self.root / MASKS_DIR

    @property
    def soft_dir(self) -> Path:
        return self.root / SOFT_DIR

    @property
    def prompts_path(self) -> Path:
        return self.root / PROMPTS_FILE

    @property
    def labels_path(self) -> Path:
        return self.root / LABELS_FILE

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_FILE

    def mask_path(self, stem: str) -> Path:
        return self.masks_dir / f"{stem}.png"

    def soft_path(self, stem: str) -> Path:
        return self.soft_dir / f"{stem}.png"

    def require(self) -> DatasetLayout:
        """Raise :class:`DatasetError` unless ``root/images`` is an existing folder."""
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder does not exist")
        if not self.images_dir.is_dir():
            raise DatasetError(f"{self.root}: not a dataset (no '{IMAGES_DIR}/' folder inside)")
        return self

    def image_paths(self) -> list[Path]:
        """Image files in ``images/`` (sorted by name; hidden files skipped)."""
        if not self.images_dir.is_dir():
            return []
        return sorted(
            p
            for p in self.images_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and is_image_file(p)
        )

    def stems(self) -> list[str]:
        """Stems of the images, in the order of :meth:`image_paths`."""
        return [p.stem for p in self.image_paths()]

    def image_path(self, stem: str) -> Path:
        """The image file of ``stem``; raises :class:`DatasetError` when there is none."""
        for p in self.image_paths():
            if p.stem == stem:
                return p
        raise DatasetError(f"{self.images_dir}: no image with stem {stem!r}")


# ----------------------------------------------------------------------------------
# manifest.jsonl: append-only, one record per line, crash-tolerant
# ----------------------------------------------------------------------------------


def repair_manifest(path: str | os.PathLike[str]) -> int:
    """Cut a torn last line (a crash mid-write) off ``path``; return the bytes removed."""
    p = Path(path)
    if not p.exists():
        return 0
    with open(p, "rb+") as fh:
        data = fh.read()
        if not data or data.endswith(b"\n"):
            return 0
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    removed = len(data) - cut
    log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", p, removed)
    return removed


def append_manifest(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON record as a line to ``path`` and flush it to disk.

    A torn last line from an earlier crash is removed first, so the file always
    holds whole records followed by newlines.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    repair_manifest(p)
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n"
    with open(p, "ab") as fh:
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def iter_manifest(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of ``path``; a torn or invalid line is skipped with a warning."""
    p = Path(path)
    if not p.exists():
        return
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipped a line that is not valid JSON", p, lineno)
                continue
            if isinstance(rec, dict):
                yield rec
            else:
                log.warning("%s:%d: skipped a line that is not a JSON object", p, lineno)


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All valid records of a manifest file (see :func:`iter_manifest`)."""
    return list(iter_manifest(path))


def latest_manifest_by_stem(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The last record of each ``stem`` in the manifest (later records supersede earlier ones)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in iter_manifest(path):
        stem = rec.get("stem")
        if isinstance(stem, str):
            out[stem] = rec
    return out


# ----------------------------------------------------------------------------------
# prompts.json and labels.csv
# ----------------------------------------------------------------------------------


def _check_prompt(path: Path, stem: str, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: entry {stem!r} must be an object with 'points' and 'labels'")
    points = entry.get("points", [])
    labels = entry.get("labels", [1] * len(points))
    box = entry.get("box")
    ok_points = isinstance(points, list) and all(
        isinstance(pt, list | tuple) and len(pt) == 2 and all(isinstance(v, int | float) for v in pt)
        for pt in points
    )
    if not ok_points:
        raise DatasetError(f"{path}: entry {stem!r}: 'points' must be a list of [x, y] pixel pairs")
    if not (isinstance(labels, list) and len(labels) == len(points) and all(v in (0, 1) for v in labels)):
        raise DatasetError(
            f"{path}: entry {stem!r}: 'labels' must hold one 1 (positive) or 0 (negative) per point"
        )
    if box is not None and not (
        isinstance(box, list | tuple) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
    ):
        raise DatasetError(f"{path}: entry {stem!r}: 'box' must be [x0, y0, x1, y1] or null")
    if not points and box is None:
        raise DatasetError(f"{path}: entry {stem!r} has neither points nor a box")
    out = {
        "points": [[float(x), float(y)] for x, y in points],
        "labels": [int(v) for v in labels],
        "box": None if box is None else [float(v) for v in box],
    }
    return out


def load_prompts(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a ``prompts.json`` file: ``{stem: {"points", "labels", "box"}}`` (validated)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{p}: prompts file does not exist") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{p}: must be a JSON object mapping image stems to prompts")
    return {str(stem): _check_prompt(p, str(stem), entry) for stem, entry in raw.items()}


def save_prompts(path: str | os.PathLike[str], prompts: dict[str, dict[str, Any]]) -> None:
    """Write ``prompts`` to ``path`` atomically, sorted by stem."""
    atomic_write_text(path, json.dumps(dict(sorted(prompts.items())), indent=1) + "\n")


def load_labels(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read ``labels.csv`` (header ``stem,grade``; grade ``tender`` or ``tough``) into ``{stem: grade}``."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: labels file does not exist")
    out: dict[str, str] = {}
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"stem", "grade"} <= set(reader.fieldnames):
            raise DatasetError(f"{p}: needs a header row with the columns 'stem,grade'")
        for lineno, row in enumerate(reader, 2):
            stem = (row.get("stem") or "").strip()
            grade = (row.get("grade") or "").strip().lower()
            if not stem:
                raise DatasetError(f"{p}:{lineno}: empty stem")
            if grade not in GRADES:
                raise DatasetError(f"{p}:{lineno}: grade {grade!r} must be one of {', '.join(GRADES)}")
            if stem in out and out[stem] != grade:
                raise DatasetError(f"{p}:{lineno}: stem {stem!r} is labelled twice with different grades")
            out[stem] = grade
    return out
