"""Evaluation of a student: ``okra eval MODEL DATA [--split test] [--tolerance 2] [--out DIR]``.

MODEL is a model folder (``card.json`` + ``model.safetensors``) or a training run folder
(which holds its best model the same way). Each image of the split is resized to the
card's input size, normalised as the card says, run through the network; the
probability is upsampled to the photo's full size and thresholded at the card's
threshold (with the card's hysteresis seed threshold when it has one), then compared
with the reference mask at full size.

What the reference is:

* ``--ground-truth DIR`` (or ``DATA/masks_gt/`` when it exists) holds exact masks
  ``<stem>.png``: accuracy is measured against them, and, where ``DATA/masks/`` came
  from a teacher (its ``manifest.jsonl`` records name one), *fidelity* (student versus
  teacher) and the teacher's own IoU against ground truth are reported beside it;
* otherwise ``DATA/masks/`` is the reference. When the manifest says a teacher made
  them, the figures are fidelity to the teacher (the table says so), not accuracy.

Outputs in ``--out`` (default ``eval/<model>-<data>-<split>``): ``per_image.csv``
(one row per image, an ``error`` column for images that failed), ``summary.json``
(overall figures, model size and latency) and ``gallery.png`` (the worst images:
photo, reference in green, prediction in magenta).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.checkpoint import WEIGHTS_FILE, ModelCard, load_checkpoint, resolve_model_dir
from okrainsight.dataset import DatasetLayout, latest_manifest_by_stem
from okrainsight.errors import DatasetError, OkraError
from okrainsight.hysteresis import okra_mask
from okrainsight.imageio import atomic_write_text, read_image, read_mask, write_image
from okrainsight.metrics import METRIC_NAMES, MetricAccumulator
from okrainsight.tiling import photo_probability
from okrainsight.torchdata import read_split_stems

log = logging.getLogger(__name__)

GT_DIR = "masks_gt"
CSV_COLUMNS = ("stem", *METRIC_NAMES, "pred_fraction", "fidelity_iou", "teacher_iou", "error")


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`.

    Attributes:
        rows: one dict per image (keys :data:`CSV_COLUMNS`; missing values None).
        summary: overall figures against the reference (see :class:`MetricAccumulator`).
        reference: ``"ground_truth"`` or ``"teacher"`` (what ``summary`` compares with).
        fidelity: overall student-versus-teacher figures when the teacher's masks exist
            beside ground truth, else None.
        teacher_accuracy: overall teacher-versus-ground-truth figures, or None.
        model: name, arch, input size, parameter count, bytes at fp32/fp16, file bytes,
            median CPU latency in ms.
        out: the output folder.
        errors: one line per image that failed.
    """

    rows: list[dict[str, Any]]
    summary: dict[str, float]
    reference: str
    fidelity: dict[str, float] | None
    teacher_accuracy: dict[str, float] | None
    model: dict[str, Any]
    out: Path
    errors: list[str] = field(default_factory=list)

    def worst(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` scored images with the lowest IoU (ties: lowest boundary F first)."""
        ok = [r for r in self.rows if r.get("error") is None]
        return sorted(ok, key=lambda r: (r["iou"], r["boundary_f"], r["stem"]))[:n]


def model_size(model: Any) -> dict[str, int]:
    """Parameter count and the bytes of the state dict at fp32 and fp16 (integer buffers as stored)."""
    params = sum(int(p.numel()) for p in model.parameters())
    fp32 = fp16 = 0
    for t in model.state_dict().values():
        if t.is_floating_point():
            fp32 += t.numel() * 4
            fp16 += t.numel() * 2
        else:
            fp32 += t.numel() * t.element_size()
            fp16 += t.numel() * t.element_size()
    return {"parameters": params, "bytes_fp32": fp32, "bytes_fp16": fp16}


def cpu_latency_ms(model: Any, size_wh: tuple[int, int], runs: int = 20, warmup: int = 3) -> float:
    """Median wall time in ms of one forward pass on a ``(1, 3, H, W)`` input in PyTorch on CPU."""
    import torch

    x = torch.randn(1, 3, size_wh[1], size_wh[0])
    times = []
    with torch.inference_mode():
        for i in range(warmup + max(1, runs)):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def predict_probability(model: Any, card: ModelCard, image: np.ndarray) -> np.ndarray:
    """Okra probability ``(H, W)`` float32 in [0, 1] at the image's full size, as the runtime
    computes it: ``image`` (``(H, W, 3)`` uint8 RGB) is covered with the card's tiles
    (:mod:`okrainsight.tiling`); each tile is resized to ``card.input_size`` (area interpolation
    when shrinking), normalised, run (averaged over the card's ``flips``, :mod:`okrainsight.flips`),
    and the sigmoid of the logits resized back (bilinear) before any thresholding.
    """
    import torch

    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)

    def run(small: np.ndarray) -> np.ndarray:
        x = (small.astype(np.float32) / 255.0 - mean) / std
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
        with torch.inference_mode():
            return torch.sigmoid(model(xt).float())[0, 0].cpu().numpy()

    return photo_probability(image, run, card.input_size, card.zooms, card.flips)


def _teacher_labelled(root: Path, stems: list[str]) -> bool:
    records = latest_manifest_by_stem(DatasetLayout(root).manifest_path)
    return any(records.get(s, {}).get("teacher") for s in stems)


def _overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.astype(np.float32).copy()
    m = mask > 0
    out[m] = 0.5 * out[m] + 0.5 * np.asarray(colour, np.float32)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = out.astype(np.uint8)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def save_gallery(
    path: Path, tiles: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], height: int = 160
) -> None:
    """Write a PNG with one row per image: photo | reference (green) | prediction (magenta).

    ``tiles`` holds ``(caption, image RGB uint8, reference mask, predicted mask)``.
    """
    rows = []
    for caption, image, ref, pred in tiles:
        scale = height / image.shape[0]
        size = (max(1, round(image.shape[1] * scale)), height)

        def fit(a: np.ndarray, interp: int = cv2.INTER_AREA, size: tuple[int, int] = size) -> np.ndarray:
            return cv2.resize(a, size, interpolation=interp)

        small = fit(image)
        ref_s = fit(ref, cv2.INTER_NEAREST)
        pred_s = fit(pred, cv2.INTER_NEAREST)
        row = np.concatenate(
            [small, _overlay(small, ref_s, (0, 220, 0)), _overlay(small, pred_s, (230, 0, 200))], axis=1
        )
        bar = np.full((22, row.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([bar, row], axis=0))
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    write_image(path, np.concatenate(padded, axis=0))


def _fmt(v: Any) -> Any:
    return "" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)


def write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the per-image rows as CSV (columns :data:`CSV_COLUMNS`) atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r.get(k)) for k in CSV_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def evaluate(
    model_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    split: str = "test",
    tolerance: int = 2,
    out: str | os.PathLike[str] | None = None,
    ground_truth: str | os.PathLike[str] | None = None,
    gallery: int = 8,
    latency_runs: int = 20,
    progress: bool = True,
) -> EvalResult:
    """Score the model on one split of a dataset and write the outputs (module doc).

    Raises:
        ModelError: the model folder or its weights cannot be loaded.
        DatasetError: no dataset, empty split, missing ground-truth folder.
    Per-image problems (unreadable image, missing mask) are recorded in the rows and in
    ``errors`` and the rest goes on.
    """
    from tqdm import tqdm

    model_dir = resolve_model_dir(model_path)
    model, card = load_checkpoint(model_dir)
    root = Path(data)
    layout = DatasetLayout(root).require()
    stems = read_split_stems(root, split)
    if not stems:
        raise DatasetError(f"{root}: split {split!r} has no images; try --split val or --split all")
    gt_dir = Path(ground_truth) if ground_truth is not None else None
    if gt_dir is not None and not gt_dir.is_dir():
        raise DatasetError(f"{gt_dir}: ground-truth folder does not exist")
    if gt_dir is None and (root / GT_DIR).is_dir():
        gt_dir = root / GT_DIR
    teacher_masks = _teacher_labelled(root, stems)
    reference = "ground_truth" if gt_dir is not None or not teacher_masks else "teacher"
    with_fidelity = gt_dir is not None and teacher_masks
    name = card.name or model_dir.name
    out_dir = Path(out) if out is not None else Path("eval") / f"{name}-{root.name}-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)

    acc = MetricAccumulator(tolerance=tolerance)
    fid = MetricAccumulator(tolerance=tolerance) if with_fidelity else None
    tacc = MetricAccumulator(tolerance=tolerance) if with_fidelity else None
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    paths = {p.stem: p for p in layout.image_paths()}

    def reference_path(stem: str) -> Path:
        return gt_dir / f"{stem}.png" if gt_dir is not None else layout.mask_path(stem)

    # The gallery's candidates so far (the ``gallery`` lowest (iou, boundary_f, stem) keys, as
    # EvalResult.worst picks them): image, reference and prediction kept, so the gallery needs
    # no second pass through the network.
    kept: dict[str, tuple[tuple[Any, ...], np.ndarray, np.ndarray, np.ndarray]] = {}

    for stem in tqdm(stems, desc="okra eval", unit="img", disable=not progress):
        row: dict[str, Any] = {"stem": stem, "error": None}
        try:
            if stem not in paths:
                raise DatasetError(f"{layout.images_dir}: no image with stem {stem!r}")
            image = read_image(paths[stem])
            ref_path = reference_path(stem)
            if not ref_path.is_file():
                raise DatasetError(f"{ref_path}: reference mask missing")
            ref = read_mask(ref_path)
            if ref.shape != image.shape[:2]:
                raise DatasetError(f"{ref_path}: mask size {ref.shape[::-1]} differs from the image's")
            teacher = None
            if with_fidelity and layout.mask_path(stem).is_file():
                teacher = read_mask(layout.mask_path(stem))
                if teacher.shape != ref.shape:
                    teacher = None
            prob = predict_probability(model, card, image)
            pred = okra_mask(prob, card.threshold, card.seed_threshold).astype(np.uint8) * 255
        except OkraError as exc:
            row["error"] = str(exc)
            errors.append(f"{stem}: {exc}")
            rows.append(row)
            continue
        row.update(acc.add(pred, ref))
        if teacher is not None and fid is not None and tacc is not None:
            row["fidelity_iou"] = fid.add(pred, teacher)["iou"]
            row["teacher_iou"] = tacc.add(teacher, ref)["iou"]
        rows.append(row)
        if gallery > 0:
            kept[stem] = ((row["iou"], row["boundary_f"], stem), image, ref, pred > 0)
            if len(kept) > gallery:
                del kept[max(kept, key=lambda s: kept[s][0])]

    size = model_size(model)
    weights = model_dir / WEIGHTS_FILE
    info: dict[str, Any] = {
        "name": name,
        "path": str(model_dir),
        "arch": card.arch,
        "input_size": list(card.input_size),
        "threshold": card.threshold,
        "seed_threshold": card.seed_threshold,  # hysteresis (okrainsight.hysteresis), as okra segment does
        "zooms": list(card.zooms),  # how photos were tiled (okrainsight.tiling), as okra segment does
        "flips": list(card.flips),  # mirror images averaged in (okrainsight.flips), as okra segment does
        **size,
        "file_bytes": weights.stat().st_size if weights.is_file() else None,
        "latency_ms_cpu_median": cpu_latency_ms(model, card.input_size, runs=latency_runs),
        "torch_threads": _torch_threads(),
    }
    result = EvalResult(
        rows=rows,
        summary=_summary(acc),
        reference=reference,
        fidelity=fid.summary() if fid is not None and fid.rows else None,
        teacher_accuracy=tacc.summary() if tacc is not None and tacc.rows else None,
        model=info,
        out=out_dir,
        errors=errors,
    )
    write_rows_csv(out_dir / "per_image.csv", rows)
    doc = {
        "data": str(root),
        "split": split,
        "tolerance_px": tolerance,
        "reference": reference,
        "ground_truth": str(gt_dir) if gt_dir is not None else None,
        "summary": result.summary,
        "fidelity": result.fidelity,
        "teacher_accuracy": result.teacher_accuracy,
        "model": info,
        "errors": errors,
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(_clean(doc), indent=2, sort_keys=True) + "\n")
    worst = result.worst(gallery)
    if worst:
        tiles = []
        for r in worst:
            if r["stem"] in kept:
                _, image, ref, pred = kept[r["stem"]]
            else:  # not among the kept candidates (NaN scores sort unpredictably): predict again
                image = read_image(paths[r["stem"]])
                ref = read_mask(reference_path(r["stem"]))
                pred = okra_mask(predict_probability(model, card, image), card.threshold, card.seed_threshold)
            tiles.append((f"{r['stem']}  IoU {r['iou']:.3f}", image, ref, pred))
        save_gallery(out_dir / "gallery.png", tiles)
    return result


def _clean(v: Any) -> Any:
    """JSON-safe copy: NaN becomes null."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


def _summary(acc: MetricAccumulator) -> dict[str, float]:
    return acc.summary() if acc.rows else {"images": 0.0}


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


__all__ = [
    "CSV_COLUMNS",
    "EvalResult",
    "cpu_latency_ms",
    "evaluate",
    "model_size",
    "predict_probability",
    "save_gallery",
    "write_rows_csv",
]
