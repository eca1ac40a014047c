"""Quality control of teacher labels: which masks a person should look at first.

A label is flagged when

* ``low_score``: the teacher's own confidence (SAM's predicted IoU) is low;
* ``unstable``: the mask changes when the decision threshold moves (stability score);
* ``candidates_disagree``: the teacher's candidate masks differ a lot (pairwise IoU);
* ``student_disagrees``: a trained student's mask differs a lot (when a student is given);
* ``empty``, ``too_small``, ``too_large``: okra area out of a plausible range;
* ``not_elongated``: the largest region is round, not pod-shaped;
* ``on_border``: most of the mask lies in a thin band along the image edge.

Each flag adds to a *suspicion* score (1 per flag plus how far past its threshold
the value is), so ``review.csv`` lists the worst labels first.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.dataset import DatasetLayout, append_manifest, iter_manifest
from okrainsight.imageio import atomic_write_text, read_mask
from okrainsight.metrics import iou

REVIEW_FILE = "review.csv"
REVIEW_COLUMNS = ("stem", "suspicion", "flags", "score", "stability", "teacher", "label_id", "accepted")
_TRUE = {"1", "y", "yes", "true", "x", "accept", "accepted", "ok"}


@dataclass(frozen=True)
class QCThresholds:
    """Limits beyond which a label is flagged (fractions are of the image area unless stated)."""

    min_score: float = 0.8
    min_stability: float = 0.8
    min_candidate_iou: float = 0.5
    min_student_iou: float = 0.5
    min_area: float = 0.002
    max_area: float = 0.6
    min_elongation: float = 1.8
    max_border_share: float = 0.5
    border_band: float = 0.04


@dataclass
class QCResult:
    """Flags raised for one label, its suspicion (0 = nothing to see) and the measured values."""

    flags: list[str] = field(default_factory=list)
    suspicion: float = 0.0
    measures: dict[str, float] = field(default_factory=dict)


def elongation(mask: np.ndarray) -> float:
    """Ratio of the major to the minor axis (from second moments) of the largest connected region.

    ``mask``: ``(H, W)`` bool. Returns 0.0 for an empty mask, 1.0 for a disc.
    """
    m = np.asarray(mask, np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return 0.0
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(lab == biggest)
    if len(xs) < 3:
        return 1.0
    cov = np.cov(np.vstack([xs, ys]).astype(np.float64))
    ev = np.sort(np.linalg.eigvalsh(cov + np.eye(2) / 12.0))  # +1/12: a pixel's own extent
    return float(np.sqrt(ev[1] / max(ev[0], 1e-9)))


def border_share(mask: np.ndarray, band: float) -> float:
    """Share of the mask's pixels within ``band`` of the edge (a fraction of the shorter side, >= 2 px)."""
    m = np.asarray(mask, bool)
    total = m.sum()
    if total == 0:
        return 0.0
    h, w = m.shape
    b = max(2, round(band * min(h, w)))
    inner = m[b : h - b, b : w - b].sum() if h > 2 * b and w > 2 * b else 0
    return float((total - inner) / total)


def check_label(
    mask: np.ndarray,
    *,
    score: float | None = None,
    stability: float | None = None,
    candidates: list[np.ndarray] | None = None,
    student_mask: np.ndarray | None = None,
    thresholds: QCThresholds | None = None,
) -> QCResult:
    """Flag one label (``mask``: ``(H, W)`` bool) for review; see the module docstring."""
    t = thresholds or QCThresholds()
    m = np.asarray(mask, bool)
    out = QCResult()

    def flag(name: str, severity: float) -> None:
        out.flags.append(name)
        out.suspicion += 1.0 + max(0.0, float(severity))

    area = float(m.mean()) if m.size else 0.0
    out.measures["area"] = area
    if score is not None:
        out.measures["score"] = float(score)
        if score < t.min_score:
            flag("low_score", (t.min_score - score) / max(t.min_score, 1e-6))
    if stability is not None:
        out.measures["stability"] = float(stability)
        if stability < t.min_stability:
            flag("unstable", (t.min_stability - stability) / max(t.min_stability, 1e-6))
    if candidates is not None and len(candidates) > 1:
        ious = [iou(a, b) for a, b in itertools.combinations(candidates, 2)]
        worst = min(ious)
        out.measures["candidate_iou"] = worst
        if worst < t.min_candidate_iou:
            flag("candidates_disagree", (t.min_candidate_iou - worst) / t.min_candidate_iou)
    if student_mask is not None:
        s_iou = iou(m, student_mask)
        out.measures["student_iou"] = s_iou
        if s_iou < t.min_student_iou:
            flag("student_disagrees", (t.min_student_iou - s_iou) / t.min_student_iou)
    if area == 0.0:
        flag("empty", 2.0)
        return out
    if area < t.min_area:
        flag("too_small", (t.min_area - area) / t.min_area)
    if area > t.max_area:
        flag("too_large", (area - t.max_area) / (1 - t.max_area))
    el = elongation(m)
    out.measures["elongation"] = el
    if el < t.min_elongation:
        flag("not_elongated", (t.min_elongation - el) / t.min_elongation)
    bs = border_share(m, t.border_band)
    out.measures["border_share"] = bs
    if bs > t.max_border_share:
        flag("on_border", (bs - t.max_border_share) / (1 - t.max_border_share))
    return out


# ----------------------------------------------------------------------------------
# review: list flagged labels, accept them
# ----------------------------------------------------------------------------------


@dataclass
class ReviewRow:
    """One label awaiting review (the latest label record of its stem)."""

    stem: str
    suspicion: float
    flags: list[str]
    score: float | None
    stability: float | None
    teacher: str
    label_id: str
    accepted: bool = False


def mask_digest(mask_u8: np.ndarray) -> str:
    """SHA-256 of a 0/255 ``(H, W)`` uint8 mask's pixels (independent of PNG encoding)."""
    return hashlib.sha256(np.ascontiguousarray(mask_u8, np.uint8).tobytes()).hexdigest()


def _mask_file_digest(path: Path) -> str | None:
    try:
        return mask_digest(read_mask(path))
    except Exception:  # a missing or broken mask is a different problem (okra check)
        return None


def latest_labels(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The latest ``kind == "label"`` manifest record of each stem."""
    out: dict[str, dict[str, Any]] = {}
    for rec in iter_manifest(DatasetLayout(root).manifest_path):
        if rec.get("kind") == "label" and isinstance(rec.get("stem"), str):
            out[rec["stem"]] = rec
    return out


def review_rows(root: str | os.PathLike[str]) -> list[ReviewRow]:
    """Flagged labels not yet accepted or corrected, most suspicious first.

    A label counts as *corrected* when the mask on disk no longer has the pixels the
    teacher wrote (someone replaced it), and as *accepted* when its latest record says so.
    """
    layout = DatasetLayout(root)
    rows: list[ReviewRow] = []
    for stem, rec in latest_labels(root).items():
        if not rec.get("qc_flags") or rec.get("accepted"):
            continue
        digest = rec.get("mask_sha256")
        if digest and _mask_file_digest(layout.mask_path(stem)) not in (digest, None):
            continue  # corrected by hand since
        rows.append(
            ReviewRow(
                stem=stem,
                suspicion=float(rec.get("qc_suspicion", 0.0)),
                flags=list(rec.get("qc_flags", [])),
                score=rec.get("score"),
                stability=rec.get("stability"),
                teacher=str(rec.get("teacher", "")),
                label_id=str(rec.get("label_id", "")),
            )
        )
    rows.sort(key=lambda r: (-r.suspicion, r.stem))
    return rows


def accept_labels(root: str | os.PathLike[str], stems: list[str]) -> list[str]:
    """Mark the latest labels of ``stems`` as reviewed and accepted.

    Appends a copy of each stem's latest label record with ``accepted: true`` and
    ``accepted_at``, so the latest record of the stem stays complete. Returns the stems
    accepted (stems without a label record are skipped).
    """
    layout = DatasetLayout(root)
    latest = latest_labels(root)
    done: list[str] = []
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    for stem in stems:
        rec = latest.get(stem)
        if rec is None or rec.get("accepted"):
            continue
        append_manifest(layout.manifest_path, {**rec, "accepted": True, "accepted_at": now})
        done.append(stem)
    return done


def read_review_acceptances(path: str | os.PathLike[str]) -> list[str]:
    """Stems whose ``accepted`` column in a ``review.csv`` is ticked (1, yes, true, x, ok)."""
    p = Path(path)
    if not p.exists():
        return []
    with open(p, newline="", encoding="utf-8") as fh:
        return [
            (row.get("stem") or "").strip()
            for row in csv.DictReader(fh)
            if (row.get("accepted") or "").strip().lower() in _TRUE and (row.get("stem") or "").strip()
        ]


def write_review(root: str | os.PathLike[str], rows: list[ReviewRow]) -> Path:
    """Write ``review.csv`` (most suspicious first) atomically into the dataset folder."""
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r.stem,
                f"{r.suspicion:.3f}",
                " ".join(r.flags),
                "" if r.score is None else f"{r.score:.4f}",
                "" if r.stability is None else f"{r.stability:.4f}",
                r.teacher,
                r.label_id,
                "",
            ]
        )
    path = Path(root) / REVIEW_FILE
    atomic_write_text(path, buf.getvalue())
    return path


def review(root: str | os.PathLike[str], accept: list[str] | None = None) -> tuple[list[ReviewRow], Path]:
    """Apply acceptances (``accept`` plus ticks in an existing ``review.csv``), then write a fresh
    ``review.csv``. Returns the rows still to review and the file's path."""
    stems = list(accept or []) + read_review_acceptances(Path(root) / REVIEW_FILE)
    if stems:
        accept_labels(root, list(dict.fromkeys(stems)))
    rows = review_rows(root)
    return rows, write_review(root, rows)
