"""The on-disk dataset format shared by the renderer, the labeller, the trainer and the server.

Layout of a dataset folder ``DATA/`` (see ``docs/dataset.md``)::

    DATA/images/<stem>.<ext>    photos (any format :mod:`okrainsight.imageio` reads)
    DATA/masks/<stem>.png       8-bit single-channel PNG, 0 = background, 255 = okra
    DATA/soft/<stem>.png        optional teacher probability, 0..255 (for distillation)
    DATA/prompts.json           optional {stem: {"points": [[x, y], ...], "labels": [1, 0, ...],
                                                 "box": [x0, y0, x1, y1] | null}}
    DATA/labels.csv             optional "stem,grade" with grade tender|tough
    DATA/manifest.jsonl         one JSON provenance record per line (one per mask)
    DATA/groups.csv             optional "stem,group": which okra each photo shows (for splits)
    DATA/splits/{train,val,test}.txt   one stem per line, written by ``okra dataset split``

Points and boxes are pixel coordinates ``(x, y)`` of the oriented image, origin at
the top-left pixel. A *stem* is the image file name without its extension; stems
are unique within a dataset.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from okrainsight.errors import ConfigError, DatasetError, ImageReadError
from okrainsight.imageio import atomic_write_text, image_size, is_image_file, read_image, read_mask

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


# ----------------------------------------------------------------------------------
# okra dataset check: every defect, one record each
# ----------------------------------------------------------------------------------

#: Kinds of :class:`Defect` that make training impossible (an image without a usable mask).
FATAL_DEFECT_KINDS = (
    "duplicate-stem",
    "unreadable-image",
    "missing-mask",
    "unreadable-mask",
    "mask-format",
    "non-binary-mask",
    "size-mismatch",
)

#: Kinds of :class:`Defect`, in the order the check reports them (the fatal ones first).
DEFECT_KINDS = (
    *FATAL_DEFECT_KINDS,
    "orphan-mask",
    "unreadable-soft",
    "soft-size-mismatch",
    "orphan-soft",
    "stray-file",
    "bad-prompts",
    "prompt-unknown-stem",
    "bad-labels",
    "label-unknown-stem",
    "bad-manifest",
    "torn-manifest",
    "bad-groups",
)


@dataclass(frozen=True)
class Defect:
    """One problem found by :func:`check_dataset`.

    Attributes:
        stem: the image stem concerned, or ``""`` for a problem of a whole file
            (for example invalid JSON in ``prompts.json``).
        path: the file at fault.
        kind: one of :data:`DEFECT_KINDS`.
        message: one line naming the file and the problem.
    """

    stem: str
    path: Path
    kind: str
    message: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict with the four fields (``path`` as a string)."""
        return {"stem": self.stem, "path": str(self.path), "kind": self.kind, "message": self.message}


def _mask_problems(path: Path, stem: str, expect_size: tuple[int, int] | None, *, soft: bool) -> list[Defect]:
    """Check one mask (or soft map) file against its image's oriented ``(width, height)``."""
    what = "soft map" if soft else "mask"
    try:
        arr = read_mask(path, binarize=False)
    except ImageReadError as exc:
        kind = "unreadable-soft" if soft else "unreadable-mask"
        return [Defect(stem, path, kind, f"{what} {exc}")]
    out: list[Defect] = []
    with Image.open(path) as pil:
        mode, fmt = pil.mode, pil.format
    if mode != "L" or fmt != "PNG":
        out.append(
            Defect(
                stem,
                path,
                "mask-format",
                f"{path}: {what} is a {fmt} file in mode {mode}; it must be an 8-bit single-channel (L) PNG",
            )
        )
    h, w = arr.shape[:2]
    if expect_size is not None and (w, h) != expect_size:
        kind = "soft-size-mismatch" if soft else "size-mismatch"
        out.append(
            Defect(
                stem,
                path,
                kind,
                f"{path}: {what} is {w}x{h} but its image is {expect_size[0]}x{expect_size[1]} "
                "(after EXIF orientation)",
            )
        )
    if not soft:
        values = np.unique(arr)
        bad = values[(values != 0) & (values != 255)]
        if bad.size:
            shown = ", ".join(str(int(v)) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
            out.append(
                Defect(
                    stem,
                    path,
                    "non-binary-mask",
                    f"{path}: mask has values other than 0 and 255 ({shown}; {bad.size} distinct)",
                )
            )
    return out


def _check_prompts(layout: DatasetLayout, sizes: dict[str, tuple[int, int] | None]) -> list[Defect]:
    p = layout.prompts_path
    if not p.exists():
        return []
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [Defect("", p, "bad-prompts", f"{p}: not valid JSON ({' '.join(str(exc).split())})")]
    if not isinstance(raw, dict):
        return [Defect("", p, "bad-prompts", f"{p}: must be a JSON object mapping image stems to prompts")]
    out: list[Defect] = []
    for stem, entry in raw.items():
        try:
            prompt = _check_prompt(p, stem, entry)
        except DatasetError as exc:
            out.append(Defect(stem, p, "bad-prompts", str(exc)))
            continue
        if stem not in sizes:
            out.append(Defect(stem, p, "prompt-unknown-stem", f"{p}: entry {stem!r} names no image"))
            continue
        size = sizes[stem]
        if size is None:
            continue
        w, h = size
        coords = [tuple(pt) for pt in prompt["points"]]
        if prompt["box"] is not None:
            x0, y0, x1, y1 = prompt["box"]
            coords += [(x0, y0), (x1, y1)]
            if x1 <= x0 or y1 <= y0:
                out.append(
                    Defect(stem, p, "bad-prompts", f"{p}: entry {stem!r}: box must have x0 < x1 and y0 < y1")
                )
        outside = [c for c in coords if not (0 <= c[0] <= w and 0 <= c[1] <= h)]
        if outside:
            out.append(
                Defect(
                    stem,
                    p,
                    "bad-prompts",
                    f"{p}: entry {stem!r}: point ({outside[0][0]:g}, {outside[0][1]:g}) lies outside "
                    f"the {w}x{h} image",
                )
            )
    return out


def _check_labels(layout: DatasetLayout, stems: set[str]) -> list[Defect]:
    p = layout.labels_path
    if not p.exists():
        return []
    out: list[Defect] = []
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"stem", "grade"} <= {f.strip() for f in reader.fieldnames}:
                return [Defect("", p, "bad-labels", f"{p}: needs a header row with the columns 'stem,grade'")]
            seen: dict[str, str] = {}
            for lineno, row in enumerate(reader, 2):
                row = {(k or "").strip(): v for k, v in row.items()}
                stem = (row.get("stem") or "").strip()
                grade = (row.get("grade") or "").strip().lower()
                if not stem:
                    out.append(Defect("", p, "bad-labels", f"{p}:{lineno}: empty stem"))
                    continue
                if grade not in GRADES:
                    msg = f"{p}:{lineno}: grade {grade!r} of {stem!r} must be one of {', '.join(GRADES)}"
                    out.append(Defect(stem, p, "bad-labels", msg))
                    continue
                if stem in seen and seen[stem] != grade:
                    msg = f"{p}:{lineno}: stem {stem!r} is labelled twice with different grades"
                    out.append(Defect(stem, p, "bad-labels", msg))
                seen[stem] = grade
                if stem not in stems:
                    msg = f"{p}:{lineno}: stem {stem!r} names no image"
                    out.append(Defect(stem, p, "label-unknown-stem", msg))
    except (UnicodeDecodeError, csv.Error) as exc:
        out.append(Defect("", p, "bad-labels", f"{p}: cannot be parsed as UTF-8 CSV ({exc})"))
    return out


def _check_manifest(layout: DatasetLayout) -> list[Defect]:
    p = layout.manifest_path
    if not p.exists():
        return []
    data = p.read_bytes()
    out: list[Defect] = []
    lines = data.split(b"\n")
    torn = not data.endswith(b"\n") and data != b""
    for lineno, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        last = lineno == len(lines)
        try:
            rec = json.loads(text.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if torn and last:
                msg = (
                    f"{p}:{lineno}: torn last line left by an interrupted write; readers skip it and the "
                    "next append removes it (or run 'okra dataset check --repair')"
                )
                out.append(Defect("", p, "torn-manifest", msg))
            else:
                out.append(Defect("", p, "bad-manifest", f"{p}:{lineno}: not valid JSON"))
            continue
        if not isinstance(rec, dict):
            out.append(Defect("", p, "bad-manifest", f"{p}:{lineno}: not a JSON object"))
        elif not isinstance(rec.get("stem"), str) or not rec["stem"]:
            out.append(Defect("", p, "bad-manifest", f"{p}:{lineno}: record has no 'stem' string"))
    return out


def check_dataset(
    root: str | os.PathLike[str], *, repair: bool = False, progress: bool = False
) -> list[Defect]:
    """Report every defect of the dataset at ``root``.

    Checks: duplicate stems (``a.jpg`` and ``a.png``), unreadable images (fully decoded),
    images without a mask, unreadable masks, masks that are not 8-bit single-channel PNG,
    masks with values other than 0/255, masks whose size differs from the oriented image,
    orphan masks and soft maps, stray non-image files, invalid ``prompts.json`` entries or
    entries naming no image (or pointing outside the image), ``labels.csv`` problems,
    invalid ``manifest.jsonl`` lines (a torn last line separately), invalid ``groups.csv``.

    Args:
        root: the dataset folder (must contain ``images/``).
        repair: first cut a torn last line off ``manifest.jsonl`` (the only repair made).
        progress: show a progress bar on stderr.

    Returns:
        The defects, sorted by kind (in :data:`DEFECT_KINDS` order), then stem and path.

    Raises:
        DatasetError: ``root`` or ``root/images`` does not exist.
    """
    layout = DatasetLayout(root).require()
    if repair:
        repair_manifest(layout.manifest_path)
    defects: list[Defect] = []
    by_stem: dict[str, list[Path]] = {}
    for path in layout.image_paths():
        by_stem.setdefault(path.stem, []).append(path)
    for stem, paths in by_stem.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            for extra in paths[1:]:
                msg = f"{extra}: stem {stem!r} is used by {len(paths)} images ({names}); stems must be unique"
                defects.append(Defect(stem, extra, "duplicate-stem", msg))
    for p in sorted(layout.images_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or not is_image_file(p):
            what = "folder" if p.is_dir() else "file"
            msg = f"{p}: {what} without an image extension in {IMAGES_DIR}/ (ignored by every tool)"
            defects.append(Defect(p.stem, p, "stray-file", msg))

    sizes: dict[str, tuple[int, int] | None] = {}
    for stem, paths in tqdm(
        by_stem.items(), desc="check", unit="image", disable=None if progress else True, leave=False
    ):
        image = paths[0]
        try:
            read_image(image)
            sizes[stem] = image_size(image)
        except ImageReadError as exc:
            defects.append(Defect(stem, image, "unreadable-image", str(exc)))
            sizes[stem] = None
        mask = layout.mask_path(stem)
        if mask.exists():
            defects += _mask_problems(mask, stem, sizes[stem], soft=False)
        else:
            defects.append(Defect(stem, image, "missing-mask", f"{image}: has no mask (expected {mask})"))
        soft = layout.soft_path(stem)
        if soft.exists():
            defects += _mask_problems(soft, stem, sizes[stem], soft=True)

    for folder, kind in ((layout.masks_dir, "orphan-mask"), (layout.soft_dir, "orphan-soft")):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_file() and p.suffix == ".png":
                if p.stem not in by_stem:
                    what = "mask" if kind == "orphan-mask" else "soft map"
                    msg = f"{p}: {what} has no image {IMAGES_DIR}/{p.stem}.*"
                    defects.append(Defect(p.stem, p, kind, msg))
            else:
                msg = f"{p}: not a .png file in {folder.name}/ (ignored by every tool)"
                defects.append(Defect(p.stem, p, "stray-file", msg))

    defects += _check_prompts(layout, sizes)
    defects += _check_labels(layout, set(by_stem))
    defects += _check_manifest(layout)
    defects += _check_groups(layout, set(by_stem))
    order = {k: i for i, k in enumerate(DEFECT_KINDS)}
    defects.sort(key=lambda d: (order.get(d.kind, len(order)), d.stem, str(d.path), d.message))
    return defects


# ----------------------------------------------------------------------------------
# okra dataset split: train/val/test lists grouped by okra
# ----------------------------------------------------------------------------------

GROUPS_FILE = "groups.csv"
SPLITS_DIR = "splits"
SPLIT_NAMES = ("train", "val", "test")

#: Default group key: everything up to and including the first run of digits.
#: ``okra_12_tipbreak_int1`` and ``okra_12_tipbend_int1`` (two poses of okra 12)
#: both give ``okra_12``; ``white_04_bunch`` gives ``white_04``; ``okra7b`` gives ``okra7``.
#: A stem without digits is its own group. The rule errs on the safe side: a
#: date-first name such as ``IMG_20240501_1234`` groups a whole day together.
DEFAULT_GROUP_REGEX = r"^(\D*\d+)"


def _groups_csv(layout: DatasetLayout, column: str) -> tuple[dict[str, str], list[str]]:
    """``{stem: group}`` from ``groups.csv`` plus one message per problem found."""
    p = layout.root / GROUPS_FILE
    if not p.exists():
        return {}, []
    out: dict[str, str] = {}
    problems: list[str] = []
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip() for f in reader.fieldnames or []]
            if "stem" not in fields or column not in fields:
                return {}, [f"{p}: needs a header row with the columns 'stem,{column}'"]
            for lineno, row in enumerate(reader, 2):
                row = {(k or "").strip(): v for k, v in row.items()}
                stem = (row.get("stem") or "").strip()
                group = (row.get(column) or "").strip()
                if not stem or not group:
                    problems.append(f"{p}:{lineno}: empty stem or {column}")
                elif stem in out and out[stem] != group:
                    problems.append(f"{p}:{lineno}: stem {stem!r} is given two groups")
                else:
                    out[stem] = group
    except (UnicodeDecodeError, csv.Error) as exc:
        return {}, [f"{p}: cannot be parsed as UTF-8 CSV ({exc})"]
    return out, problems


def _check_groups(layout: DatasetLayout, stems: set[str]) -> list[Defect]:
    p = layout.root / GROUPS_FILE
    mapping, problems = _groups_csv(layout, "group")
    out = [Defect("", p, "bad-groups", msg) for msg in problems]
    out += [
        Defect(stem, p, "bad-groups", f"{p}: stem {stem!r} names no image")
        for stem in sorted(set(mapping) - stems)
    ]
    return out


def group_keys(
    root: str | os.PathLike[str],
    stems: list[str] | None = None,
    *,
    group_regex: str | None = None,
    group_column: str = "group",
) -> dict[str, str]:
    """Map each stem to its group key (the okra it shows).

    In order of precedence:

    1. a stem listed in ``root/groups.csv`` (columns ``stem`` and ``group_column``) takes that group;
    2. with ``group_regex`` given, its first capture group matched at the start of the stem;
    3. without it, a stem whose latest manifest record says ``"source": "synth"`` is its own
       group (every rendered scene is a different okra), and any other stem is keyed by
       :data:`DEFAULT_GROUP_REGEX`.

    A stem the regex does not match is its own group.

    Raises:
        ConfigError: the regex is invalid or has no capture group.
        DatasetError: ``groups.csv`` is invalid.
    """
    layout = DatasetLayout(root)
    pattern = DEFAULT_GROUP_REGEX if group_regex is None else group_regex
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--group-regex {pattern!r} is not a valid regular expression ({exc})") from exc
    if rx.groups < 1:
        raise ConfigError(f"--group-regex {pattern!r} needs a capture group, e.g. '^(okra_\\d+)'")
    mapping, problems = _groups_csv(layout, group_column)
    if problems:
        raise DatasetError(problems[0])
    synthetic: set[str] = set()
    if group_regex is None:
        records = latest_manifest_by_stem(layout.manifest_path)
        synthetic = {stem for stem, rec in records.items() if rec.get("source") == "synth"}
    out: dict[str, str] = {}
    for stem in layout.stems() if stems is None else stems:
        if stem in mapping:
            out[stem] = mapping[stem]
            continue
        if stem in synthetic:
            out[stem] = stem
            continue
        m = rx.match(stem)
        out[stem] = m.group(1) if m and m.group(1) else stem
    return out


@dataclass(frozen=True)
class SplitResult:
    """The lists :func:`split_dataset` wrote: ``splits[name]`` is a sorted list of stems."""

    splits: dict[str, list[str]]
    groups: dict[str, str]

    def group_counts(self) -> dict[str, int]:
        """Number of distinct groups in each split."""
        return {name: len({self.groups[s] for s in stems}) for name, stems in self.splits.items()}


def assign_groups(
    groups: dict[str, str], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[str]]:
    """Assign whole groups to train/val/test so the image counts follow ``fractions``.

    Deterministic for a seed: groups are shuffled with ``random.Random(seed)`` from sorted
    order, then taken largest first; each split with a positive fraction first gets one
    group (when there are enough groups), then each group goes to the split furthest below
    its target. Returns ``{name: sorted stems}``.
    """
    members: dict[str, list[str]] = {}
    for stem, g in sorted(groups.items()):
        members.setdefault(g, []).append(stem)
    keys = sorted(members)
    random.Random(seed).shuffle(keys)
    order = sorted(range(len(keys)), key=lambda i: (-len(members[keys[i]]), i))
    ordered = [keys[i] for i in order]
    total = sum(fractions)
    targets = [f / total * len(groups) for f in fractions]
    counts = [0, 0, 0]
    out: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    active = [i for i, f in enumerate(fractions) if f > 0]
    pending = list(ordered)
    if len(pending) >= len(active):
        # smallest groups seed val and test, so a tiny dataset still gets every split
        for i in sorted(active, key=lambda i: fractions[i]):
            g = pending.pop()
            out[SPLIT_NAMES[i]] += members[g]
            counts[i] += len(members[g])
    for g in pending:
        best = max(active, key=lambda i: (targets[i] - counts[i], -i))
        out[SPLIT_NAMES[best]] += members[g]
        counts[best] += len(members[g])
    return {name: sorted(stems) for name, stems in out.items()}


def split_dataset(
    root: str | os.PathLike[str],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_regex: str | None = None,
    group_column: str = "group",
) -> SplitResult:
    """Write ``root/splits/{train,val,test}.txt`` (one stem per line), grouped by okra.

    Every group (see :func:`group_keys`) lands in exactly one split, so the photos of one
    okra never straddle train and test. Same dataset and seed give the same files.
    Files are written atomically.

    Args:
        root: the dataset folder.
        fractions: train, val and test shares of the images (non-negative, summing to 1).
        seed: shuffling seed.
        group_regex: regex whose first capture group is the group key.
        group_column: column of ``groups.csv`` holding the group.

    Raises:
        ConfigError: bad fractions or regex. DatasetError: no images or bad groups.csv.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        msg = f"split fractions {tuple(fractions)} must be three non-negative numbers summing to 1"
        raise ConfigError(msg)
    if fractions[0] <= 0:
        raise ConfigError("the train fraction must be positive (val + test must be below 1)")
    layout = DatasetLayout(root).require()
    stems = sorted(set(layout.stems()))
    if not stems:
        raise DatasetError(f"{layout.images_dir}: no images to split")
    groups = group_keys(root, stems, group_regex=group_regex, group_column=group_column)
    splits = assign_groups(groups, fractions, seed)
    n_groups = len(set(groups.values()))
    for name, frac in zip(SPLIT_NAMES, fractions, strict=True):
        if frac > 0 and not splits[name]:
            log.warning(
                "%s: split %r is empty: only %d group(s) among %d images; check the group key "
                "(--group-regex or groups.csv)",
                layout.root,
                name,
                n_groups,
                len(stems),
            )
    for name in SPLIT_NAMES:
        text = "".join(f"{s}\n" for s in splits[name])
        atomic_write_text(layout.root / SPLITS_DIR / f"{name}.txt", text)
    return SplitResult(splits=splits, groups=groups)


def read_split(root: str | os.PathLike[str], name: str) -> list[str]:
    """The stems of split ``name`` (``train``, ``val`` or ``test``) as written by :func:`split_dataset`.

    Raises:
        DatasetError: unknown name, or the split file does not exist.
    """
    if name not in SPLIT_NAMES:
        raise DatasetError(f"unknown split {name!r}; use one of {', '.join(SPLIT_NAMES)}")
    p = Path(root) / SPLITS_DIR / f"{name}.txt"
    if not p.exists():
        raise DatasetError(f"{p}: split file does not exist; run 'okra dataset split {root}' first")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
