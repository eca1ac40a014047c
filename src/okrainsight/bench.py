"""``okra benchmark``: exported students side by side, per runtime format.

For every model and format the benchmark exports the model (with the exporter's own
parity check, see :mod:`okrainsight.export`), then measures on this machine:

* parameters and the exported file's size (and how many times smaller it is than
  SAM ViT-H's checkpoint, :data:`SAM_VIT_H_BYTES`);
* latency per frame: one ``(1, S, S, 3)`` uint8 frame, ``runs`` timed calls after three
  warm-up calls, median and 90th percentile in milliseconds, frames per second from
  the median; ``threads`` intra-op threads (ONNX Runtime, XNNPACK, torch);
* mask IoU on a rendered test split (:func:`okrainsight.export.rendered_split`, exact
  masks), pooled over the split. Untrained students (plain registry names) score low:
  that is expected; pass trained model folders to compare accuracy.

The original project's students (DeepLabV3, U2-Net-P, U2-Net) run in the same call as
this project's, so the numbers compare like with like. Results go to
``benchmark.md`` (Markdown table), ``benchmark.json`` and ``benchmark.png`` (latency
against IoU) in the output folder; the exported files stay under ``models/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from okrainsight.errors import ModelError, OkraError
from okrainsight.imageio import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

#: Size of SAM ViT-H's checkpoint (``sam_vit_h_4b8939.pth``) in bytes.
SAM_VIT_H_BYTES = 2_564_550_879
#: The original OkraInsight's students.
ORIGINAL_STUDENTS = ("deeplabv3_mobilenet_v3_large", "u2netp", "u2net")
#: This project's students.
OUR_STUDENTS = ("okra_lraspp_small", "okra_unet_tiny", "lraspp_mobilenet_v3_large")
DEFAULT_MODELS = (*OUR_STUDENTS, *ORIGINAL_STUDENTS)
DEFAULT_FORMATS = ("onnx", "executorch")
BENCH_FORMATS = ("onnx", "executorch", "torchscript", "coreml")


@dataclass
class BenchRow:
    """One model in one format. Times in milliseconds; ``None`` where not measurable here."""

    model: str
    arch: str
    origin: str
    trained: bool
    format: str
    parameters: int
    bytes: int | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    fps: float | None = None
    iou: float | None = None
    parity_iou: float | None = None
    max_abs_diff: float | None = None
    sam_ratio: float | None = None
    path: str | None = None
    error: str | None = None


@dataclass
class BenchReport:
    """All rows plus the conditions they were measured under, and the files written."""

    rows: list[BenchRow]
    conditions: dict[str, Any]
    out: Path
    files: dict[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [f"{r.model} ({r.format}): {r.error}" for r in self.rows if r.error]

    def to_dict(self) -> dict[str, Any]:
        return {"conditions": self.conditions, "rows": [asdict(r) for r in self.rows], "files": self.files}


def _load(spec: str, size: int) -> tuple[Any, Any, bool]:
    """``(model, card, trained)`` for a model folder / built-in name, or an untrained registry name."""
    import dataclasses

    from okrainsight.checkpoint import ModelCard
    from okrainsight.export import load_export_source
    from okrainsight.students import create_student, list_students

    if not Path(spec).exists() and spec in list_students():
        model = create_student(spec).eval()
        card = ModelCard(arch=spec, input_size=(size, size), name=spec)
        return model, card, False
    model, card = load_export_source(spec)
    return model.eval(), dataclasses.replace(card, input_size=(size, size)), True


def _latencies(runner: Any, frame: np.ndarray, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        runner(frame)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner(frame)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _slug(spec: str) -> str:
    p = Path(spec)
    name = p.name if p.exists() else spec
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def benchmark(
    models: Sequence[str] = DEFAULT_MODELS,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    size: int = 256,
    runs: int = 30,
    out: str | os.PathLike[str] = "benchmark",
    threads: int = 2,
    split_n: int = 8,
    progress: bool = True,
) -> BenchReport:
    """Export and measure every model in every format; write ``benchmark.md/.json/.png`` into ``out``.

    Args:
        models: registry names (untrained, built with default arguments), model or run folders,
            or built-in names.
        formats: any of :data:`BENCH_FORMATS` (Core ML is timed on macOS only).
        size: square input side in pixels.
        runs: timed frames per model and format.
        threads: intra-op threads for every runtime.
        split_n: rendered test scenes for IoU.

    Returns:
        :class:`BenchReport`. A model or format that fails is recorded with its error and the
        rest go on.
    """
    import torch
    from tqdm import tqdm

    from okrainsight.export import (
        _one_line,
        export_model,
        mask_iou,
        parity_images,
        rendered_split,
        runner_for,
    )

    bad = [f for f in formats if f not in BENCH_FORMATS]
    if bad:
        raise ModelError(
            f"unknown benchmark format(s) {', '.join(bad)}; choose from {', '.join(BENCH_FORMATS)}"
        )
    if size < 16 or runs < 1 or threads < 1:
        raise ModelError("benchmark needs --size >= 16, --runs >= 1 and --threads >= 1")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = rendered_split((size, size), split_n)
    frame = np.ascontiguousarray(parity_images((size, size), 1)[0][None])
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[BenchRow] = []
    bar = tqdm(total=len(models) * len(formats), desc="benchmark", unit="export", disable=not progress)
    try:
        for spec in models:
            try:
                model, card, trained = _load(spec, size)
            except (OkraError, ImportError, RuntimeError) as exc:
                for fmt in formats:
                    rows.append(BenchRow(spec, "?", "-", False, fmt, 0, error=str(exc)))
                bar.update(len(formats))
                continue
            params = int(sum(p.numel() for p in model.parameters()))
            origin = "original" if card.arch in ORIGINAL_STUDENTS else "okrainsight"
            for fmt in formats:
                bar.set_postfix_str(f"{spec} {fmt}")
                row = BenchRow(spec, card.arch, origin, trained, fmt, params)
                rows.append(row)
                try:
                    result = export_model(model, card, fmt, out_dir / "models" / _slug(spec))
                    row.path, row.bytes = str(result.path), result.bytes
                    row.sam_ratio = SAM_VIT_H_BYTES / result.bytes
                    row.parity_iou = result.parity.iou if result.parity.n_images else None
                    row.max_abs_diff = result.parity.max_abs_diff if result.parity.n_images else None
                    runner = runner_for(result.path, fmt, threads=threads)
                    if runner is not None:
                        times = _latencies(runner, frame, runs)
                        row.median_ms = float(np.median(times))
                        row.p90_ms = float(np.percentile(times, 90))
                        row.fps = 1000.0 / row.median_ms if row.median_ms > 0 else None
                        if split:
                            row.iou = mask_iou(runner, split)
                except (OkraError, RuntimeError, ValueError) as exc:
                    row.error = _one_line(exc)
                    log.warning("benchmark %s %s failed: %s", spec, fmt, row.error)
                bar.update(1)
    finally:
        bar.close()
        torch.set_num_threads(old_threads)
    conditions = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "threads": threads,
        "size": [size, size],
        "runs": runs,
        "split_images": len(split),
        "torch": torch.__version__,
        "sam_vit_h_bytes": SAM_VIT_H_BYTES,
    }
    report = BenchReport(rows=rows, conditions=conditions, out=out_dir)
    write_report(report)
    return report


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(rows: Sequence[BenchRow]) -> str:
    """The results as a Markdown table (one line per model and format)."""
    lines = [
        "| model | origin | trained | format | parameters | file | median ms | p90 ms | fps | IoU "
        "| smaller than SAM ViT-H |",
        "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if r.error:
            err = r.error.replace("|", "/")
            lines.append(f"| {r.model} | {r.origin} | - | {r.format} | - | failed: {err} | | | | | | |")
            continue
        size = "-" if r.bytes is None else f"{r.bytes / 1e6:.2f} MB"
        lines.append(
            f"| {r.model} | {r.origin} | {'yes' if r.trained else 'no'} | {r.format} | {r.parameters:,} | "
            f"{size} | {_fmt(r.median_ms, '.2f')} | {_fmt(r.p90_ms, '.2f')} | {_fmt(r.fps, '.1f')} | "
            f"{_fmt(r.iou, '.3f')} | {_fmt(r.sam_ratio, ',.0f')}x |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: BenchReport) -> None:
    """Write ``benchmark.md``, ``benchmark.json`` and ``benchmark.png`` into ``report.out``."""
    c = report.conditions
    md = (
        "# OkraInsight benchmark\n\n"
        f"{c['date']}; {c['cpu']} ({c['cores']} cores), {c['threads']} threads; input "
        f"{c['size'][0]}x{c['size'][1]}; {c['runs']} timed frames; IoU on {c['split_images']} rendered "
        f"scenes; torch {c['torch']}. Sizes compare with SAM ViT-H ({SAM_VIT_H_BYTES:,} bytes).\n\n"
        + markdown_table(report.rows)
    )
    paths = {k: report.out / f"benchmark.{k}" for k in ("md", "json", "png")}
    atomic_write_text(paths["md"], md)
    report.files = {k: str(v) for k, v in paths.items()}
    atomic_write_text(paths["json"], json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_bytes(paths["png"], _chart(report.rows))


def _chart(rows: Sequence[BenchRow]) -> bytes:
    """PNG bytes: median latency (x, ms) against IoU (y), one marker per format."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    markers = {"onnx": "o", "executorch": "s", "torchscript": "^", "coreml": "D"}
    for fmt in BENCH_FORMATS:
        pts = [r for r in rows if r.format == fmt and r.median_ms is not None]
        if not pts:
            continue
        ax.scatter([r.median_ms for r in pts], [r.iou or 0.0 for r in pts], marker=markers[fmt], label=fmt)
        for r in pts:
            ax.annotate(
                r.model, (r.median_ms, r.iou or 0.0), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel("median latency per frame (ms)")
    ax.set_ylabel("mask IoU on rendered test scenes")
    ax.set_title("Latency against IoU")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


__all__ = [
    "BENCH_FORMATS",
    "DEFAULT_FORMATS",
    "DEFAULT_MODELS",
    "ORIGINAL_STUDENTS",
    "SAM_VIT_H_BYTES",
    "BenchReport",
    "BenchRow",
    "benchmark",
    "markdown_table",
    "write_report",
]
