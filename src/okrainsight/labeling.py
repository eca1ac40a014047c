"""The labelling loop: prompts -> teacher -> quality control -> atomic writes + provenance.

:func:`label_dataset` labels every image of a dataset that has no mask yet (every
image with ``redo``), writing for each stem, in this order:

1. ``soft/<stem>.png``: the teacher's probability (0..255), atomically;
2. ``masks/<stem>.png``: the mask (0/255), atomically, *with its provenance record
   embedded* as a PNG text chunk (``okrainsight.label``);
3. one line in ``manifest.jsonl`` (the same record), appended and fsync'd last.

Resuming after a crash or ``kill -9`` at any moment: a mask file either does not exist
(the stem is labelled again), or is whole and carries its record. When that record's
``label_id`` is already in the manifest the stem is done; when it is not (the crash hit
between steps 2 and 3) the record is appended from the mask itself, so there is no
duplicate and nothing is missing. Masks without an embedded record came from elsewhere
(the renderer, an import, a person), and masks whose pixels no longer match their record
were corrected by hand: both are left alone unless ``redo``. A torn last
manifest line is cut off before the next append (see :func:`okrainsight.dataset.append_manifest`).

Manifest record fields (``kind == "label"``): ``stem``, ``label_id``, ``image``,
``image_sha256``, ``teacher``, ``teacher_info``, ``checkpoint_sha256``, ``prompts``
(points, labels, box), ``auto_prompted``, ``prompt_source``, ``candidate_scores``,
``chosen``, ``score``, ``stability``, ``mask_area``, ``mask_sha256`` (of the 0/255 pixels),
``soft_sha256`` (of the PNG file), ``qc_flags``, ``qc_suspicion``, ``qc_measures``,
``accepted``, ``time`` (UTC), ``duration_s``, ``version``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from okrainsight import __version__
from okrainsight.dataset import DatasetLayout, append_manifest, iter_manifest, load_prompts
from okrainsight.errors import ConfigError, OkraError
from okrainsight.imageio import atomic_write_bytes, read_image, sha256_file, write_soft
from okrainsight.qc import QCThresholds, check_label, mask_digest
from okrainsight.teachers.base import Teacher

log = logging.getLogger(__name__)

#: PNG text-chunk key holding a mask's provenance record.
MASK_RECORD_KEY = "okrainsight.label"


@dataclass
class LabelReport:
    """What one :func:`label_dataset` run did (stems in its shard only)."""

    total: int = 0
    labelled: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``; raises :class:`ConfigError`."""
    try:
        i_s, n_s = text.split("/", 1)
        i, n = int(i_s), int(n_s)
    except ValueError as exc:
        raise ConfigError(f"--shard {text!r}: write it as i/n, e.g. 0/4 for the first of four") from exc
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard_of(stem: str, n: int) -> int:
    """The shard (0..n-1) a stem belongs to: a hash of the stem, so it never depends on
    which other images exist or on the machine."""
    return int(hashlib.sha256(stem.encode("utf-8")).hexdigest()[:12], 16) % n


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_mask_with_record(mask: np.ndarray, record: dict[str, Any]) -> bytes:
    """PNG bytes of a ``(H, W)`` bool mask (0/255, 8-bit grey) with ``record`` embedded as JSON."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(MASK_RECORD_KEY, json.dumps(record, sort_keys=True, default=str), zip=True)
    buf = io.BytesIO()
    img = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
    img.save(buf, format="PNG", pnginfo=info, compress_level=6)
    return buf.getvalue()


def read_mask_record(path: str | os.PathLike[str]) -> tuple[dict[str, Any] | None, np.ndarray]:
    """The record embedded in a mask PNG (None when it has none) and the mask's 0/255 pixels.

    Raises:
        OSError, ValueError: the file cannot be read as a PNG.
    """
    with Image.open(path) as img:
        img.load()
        text = getattr(img, "text", {}) or {}
        raw = text.get(MASK_RECORD_KEY)
        pixels = np.where(np.asarray(img.convert("L")) >= 128, 255, 0).astype(np.uint8)
    rec = None
    if raw:
        try:
            parsed = json.loads(raw)
            rec = parsed if isinstance(parsed, dict) else None
        except json.JSONDecodeError:
            rec = None
    return rec, pixels


@contextlib.contextmanager
def _manifest_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside the manifest, so shards on one machine append safely."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one process per dataset
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _append(layout: DatasetLayout, record: dict[str, Any]) -> None:
    with _manifest_lock(layout.manifest_path):
        append_manifest(layout.manifest_path, record)


def _state(layout: DatasetLayout, stem: str, known_ids: set[str]) -> tuple[str, dict[str, Any] | None]:
    """What to do with ``stem`` when not redoing: ``label``, ``done``, ``foreign`` or ``complete``."""
    mpath = layout.mask_path(stem)
    if not mpath.exists():
        return "label", None
    try:
        rec, pixels = read_mask_record(mpath)
    except (OSError, ValueError, SyntaxError) as exc:
        log.warning("%s: unreadable mask (%s); labelling again", mpath, exc)
        return "label", None
    if rec is None or "label_id" not in rec or mask_digest(pixels) != rec.get("mask_sha256"):
        # not written by this loop, or edited by hand since (atomic writes rule out a torn mask)
        return "foreign", None
    if rec.get("soft_sha256"):
        spath = layout.soft_path(stem)
        if not (spath.exists() and sha256_file(spath) == rec["soft_sha256"]):
            return "label", None  # an interrupted --redo replaced the soft map but not the mask yet
    if rec["label_id"] in known_ids:
        return "done", None
    return "complete", rec


def _remove_stale_temp_files(layout: DatasetLayout, older_than_s: float = 600.0) -> None:
    """Delete temporary files a killed run left in ``masks/`` and ``soft/`` (hidden ``.*.tmp``).

    Only files older than ``older_than_s`` go, so a shard still writing is never disturbed.
    """
    now = time.time()
    for folder in (layout.masks_dir, layout.soft_dir):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()


def _resolve_prompts(
    layout: DatasetLayout, prompts: dict[str, dict[str, Any]] | str | os.PathLike[str] | None
) -> dict[str, dict[str, Any]]:
    if prompts is None:
        return load_prompts(layout.prompts_path) if layout.prompts_path.exists() else {}
    if isinstance(prompts, dict):
        return prompts
    return load_prompts(prompts)


def label_one(
    layout: DatasetLayout,
    stem: str,
    image_path: Path,
    teacher: Teacher,
    prompt: dict[str, Any] | None,
    *,
    auto: bool = False,
    student: Callable[[np.ndarray], np.ndarray] | None = None,
    thresholds: QCThresholds | None = None,
) -> dict[str, Any]:
    """Label one image and write soft map, mask and manifest record (in that order).

    Returns the manifest record. Raises :class:`OkraError` for bad input.
    """
    from okrainsight.autoprompt import auto_prompt

    t0 = time.perf_counter()
    image_bytes = image_path.read_bytes()
    image = read_image(image_path)
    source = "file"
    if prompt is None:
        if not auto:
            raise ConfigError(
                f"{image_path.name}: no prompts for {stem!r}; add them to prompts.json or use --auto-prompt"
            )
        prompt = auto_prompt(image, student=student)
        if prompt is None:
            raise ConfigError(f"{image_path.name}: auto-prompting found nothing okra-like; click points")
        source = str(prompt.get("source", "auto"))
    result = teacher.predict(image, prompt.get("points"), prompt.get("labels"), prompt.get("box"))
    student_mask = None if student is None else np.asarray(student(image), bool)
    qc = check_label(
        result.mask,
        score=result.score,
        stability=result.stability,
        candidates=result.candidates,
        student_mask=student_mask,
        thresholds=thresholds,
    )
    info = teacher.describe()
    mask_u8 = np.where(result.mask, 255, 0).astype(np.uint8)
    spath = layout.soft_path(stem)
    write_soft(spath, result.probability)
    record: dict[str, Any] = {
        "kind": "label",
        "stem": stem,
        "label_id": uuid.uuid4().hex,
        "image": image_path.name,
        "image_sha256": sha256_bytes(image_bytes),
        "teacher": info.get("name", teacher.name),
        "teacher_info": info,
        "checkpoint_sha256": info.get("checkpoint_sha256"),
        "prompts": {
            "points": [[float(x), float(y)] for x, y in (prompt.get("points") or [])],
            "labels": [int(v) for v in (prompt.get("labels") or [])],
            "box": None if prompt.get("box") is None else [float(v) for v in prompt["box"]],
        },
        "auto_prompted": source != "file",
        "prompt_source": source,
        "candidate_scores": [round(float(s), 6) for s in result.candidate_scores],
        "chosen": int(result.chosen),
        "score": round(float(result.score), 6),
        "stability": round(float(result.stability), 6),
        "mask_area": round(float(result.mask.mean()), 6),
        "mask_sha256": mask_digest(mask_u8),
        "soft_sha256": sha256_file(spath),
        "qc_flags": qc.flags,
        "qc_suspicion": round(qc.suspicion, 4),
        "qc_measures": {k: round(v, 4) for k, v in qc.measures.items()},
        "accepted": False,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 4),
        "version": __version__,
    }
    atomic_write_bytes(layout.mask_path(stem), encode_mask_with_record(result.mask, record))
    _append(layout, record)
    return record


def label_dataset(
    root: str | os.PathLike[str],
    teacher: Teacher,
    *,
    prompts: dict[str, dict[str, Any]] | str | os.PathLike[str] | None = None,
    auto_prompt: bool = False,
    redo: bool = False,
    shard: tuple[int, int] = (0, 1),
    student: Callable[[np.ndarray], np.ndarray] | None = None,
    thresholds: QCThresholds | None = None,
    progress: bool = True,
) -> LabelReport:
    """Label the images of the dataset at ``root`` with ``teacher``.

    Args:
        root: dataset folder (``images/`` inside).
        teacher: any :class:`~okrainsight.teachers.base.Teacher`.
        prompts: ``{stem: {"points", "labels", "box"}}``, a prompts file, or None for
            ``root/prompts.json`` when it exists.
        auto_prompt: propose prompts for stems without any (student mask or colour prior).
        redo: relabel images that already have a mask.
        shard: ``(i, n)``: label only the stems with :func:`shard_of` ``== i``.
        student: optional ``image -> (H, W) bool`` okra mask, for auto-prompting and the
            ``student_disagrees`` check.
        progress: show a progress bar (rate, ETA) on stderr.

    Returns:
        A :class:`LabelReport`; failures are collected, not raised.
    """
    from tqdm import tqdm

    layout = DatasetLayout(root).require()
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {i}/{n}: need 0 <= i < n")
    table = _resolve_prompts(layout, prompts)
    _remove_stale_temp_files(layout)
    paths = [p for p in layout.image_paths() if shard_of(p.stem, n) == i]
    report = LabelReport(total=len(paths))
    known_ids = {str(r["label_id"]) for r in iter_manifest(layout.manifest_path) if "label_id" in r}
    todo: list[Path] = []
    for p in paths:
        if redo:
            todo.append(p)
            continue
        action, rec = _state(layout, p.stem, known_ids)
        if action == "label":
            todo.append(p)
        elif action == "complete" and rec is not None:
            _append(layout, rec)
            report.completed.append(p.stem)
            log.info("%s: manifest record completed from the mask's embedded record", p.stem)
        else:
            report.skipped.append(p.stem)
    bar = tqdm(todo, desc="label", unit="img", disable=not progress, dynamic_ncols=True)
    for p in bar:
        bar.set_postfix_str(p.stem[-24:], refresh=False)
        try:
            rec = label_one(
                layout,
                p.stem,
                p,
                teacher,
                table.get(p.stem),
                auto=auto_prompt,
                student=student,
                thresholds=thresholds,
            )
        except OkraError as exc:
            report.failed.append((p.stem, str(exc)))
            log.info("%s", exc)  # recorded in report.failed; the CLI prints it once
            continue
        except (ValueError, RuntimeError, OSError, cv2.error) as exc:  # a teacher failing on one image
            report.failed.append((p.stem, f"{p.name}: {type(exc).__name__}: {exc}"))
            log.info("%s: %s", p.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            continue
        report.labelled.append(p.stem)
        if rec["qc_flags"]:
            report.flagged.append(p.stem)
    bar.close()
    return report
