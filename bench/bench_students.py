"""Side-by-side ONNX Runtime latency of every registered student (untrained weights).

Builds each student, exports it to ONNX (opset 17, fixed 1x3xHxW input) in a temporary
folder, and times one frame per run in ONNX Runtime on the CPU with a fixed number of
intra-op threads. The timed runs of each model come in blocks (after a warm-up), and
the blocks of all models are repeated over a few rounds, so load from other
processes on the machine falls on every model alike while no two sessions' thread
pools compete. Prints a Markdown table:
parameters, fp32 size (state dict), ONNX file size, median and p90 latency, and the
speed-up of each model over ``deeplabv3_mobilenet_v3_large`` and ``u2netp`` (ratio
of medians). The minimum is shown too: on a machine shared with other work it is the
best estimate of the uncontended latency; the load average is printed beside the table.

Usage::

    .venv/bin/python bench/bench_students.py --size 256 --threads 2 --runs 30
    .venv/bin/python bench/bench_students.py --only okra_unet_tiny --variant "okra_unet_tiny:width=0.75"

A variant is ``NAME:key=value,key=value`` (values parsed as Python literals) and is
timed beside the registered defaults.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from okrainsight.students import create_student, list_students

SAM_VIT_H_BYTES = 2_564_550_879
log = logging.getLogger("bench_students")


def parse_variant(spec: str) -> tuple[str, str, dict[str, object]]:
    """``"name:k=v,k=v"`` -> (label, name, kwargs)."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, object] = {}
    items, depth, cur = [], 0, ""
    for ch in rest:  # split on commas outside brackets, so tuples survive
        depth += ch in "([" and 1 or (ch in ")]" and -1 or 0)
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    for item in filter(None, items):
        key, _, value = item.partition("=")
        try:
            kwargs[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value.strip()
    return spec if rest else name, name, kwargs


def export_onnx(model: torch.nn.Module, size: int, path: Path) -> None:
    """Export ``model`` at a fixed ``1x3xsize x size`` input to ONNX opset 17."""
    x = torch.randn(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript exporter writes opset 17 directly
            torch.onnx.export(
                model,
                (x,),
                str(path),
                opset_version=17,
                dynamo=False,
                input_names=["x"],
                output_names=["logits"],
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("TorchScript export failed (%s); trying the dynamo exporter", exc)
            torch.onnx.export(
                model, (x,), str(path), opset_version=17, input_names=["x"], output_names=["logits"]
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="square input size in pixels")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per model")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs before each block of timed runs")
    ap.add_argument("--rounds", type=int, default=3, help="the timed runs are split into this many rounds")
    ap.add_argument("--only", nargs="*", default=None, help="registered students to time (default: all)")
    ap.add_argument("--variant", action="append", default=[], help="extra NAME:key=value,... to time")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)

    specs = [(n, n, {}) for n in (args.only if args.only is not None else list_students())]
    specs += [parse_variant(v) for v in args.variant]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

    load_before = os.getloadavg()[0]
    rows: dict[str, dict[str, object]] = {}
    sessions: dict[str, ort.InferenceSession] = {}
    feed = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, kwargs in specs:
            model = create_student(name, **kwargs).eval()
            params = sum(p.numel() for p in model.parameters())
            fp32 = sum(t.numel() * 4 for t in model.state_dict().values() if t.is_floating_point())
            path = Path(tmp) / f"{len(rows)}.onnx"
            t0 = time.perf_counter()
            export_onnx(model, args.size, path)
            log.info("exported %s in %.1f s", label, time.perf_counter() - t0)
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            out = sess.run(None, {"x": feed})[0]
            if out.shape != (1, 1, args.size, args.size):
                raise SystemExit(
                    f"{label}: ONNX output shape {out.shape}, expected (1, 1, {args.size}, {args.size})"
                )
            sessions[label] = sess
            rows[label] = {"params": params, "fp32": fp32, "onnx": path.stat().st_size, "times": []}
        # Blocks of runs per model, repeated over rounds: each model runs alone in its block (no
        # other session's thread pool competes), and the rounds spread background load evenly.
        rounds = max(1, min(args.rounds, args.runs))
        for r in range(rounds):
            n = args.runs // rounds + (1 if r < args.runs % rounds else 0)
            for label, sess in sessions.items():
                for _ in range(args.warmup):
                    sess.run(None, {"x": feed})
                for _ in range(n):
                    t0 = time.perf_counter()
                    sess.run(None, {"x": feed})
                    rows[label]["times"].append((time.perf_counter() - t0) * 1000.0)  # type: ignore[union-attr]

    def med(label: str) -> float | None:
        return statistics.median(rows[label]["times"]) if label in rows else None  # type: ignore[arg-type]

    ref_deeplab, ref_u2netp = med("deeplabv3_mobilenet_v3_large"), med("u2netp")
    print(
        f"ONNX Runtime {ort.__version__}, torch {torch.__version__}, {args.threads} intra-op threads, "
        f"{args.size}x{args.size}, median/p90 of {args.runs} runs in {args.rounds} rounds, "
        f"{args.warmup} warm-up runs per block, "
        f"{os.cpu_count()} CPU cores, untrained weights; 1-min load average {load_before:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end (other processes share these cores)\n"
    )
    print(
        "| student | params | fp32 MB | ONNX MB | SAM ViT-H / fp32 "
        "| min ms | median ms | p90 ms | x DeepLab | x U2NETP |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in sorted(rows.items(), key=lambda kv: med(kv[0]) or 0.0):
        times = sorted(r["times"])  # type: ignore[arg-type]
        m = statistics.median(times)
        p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
        vs_d = f"{ref_deeplab / m:.1f}" if ref_deeplab else "-"
        vs_u = f"{ref_u2netp / m:.1f}" if ref_u2netp else "-"
        print(
            f"| `{label}` | {r['params']:,} | {r['fp32'] / 1e6:.2f} | {r['onnx'] / 1e6:.2f} | "  # type: ignore[operator]
            f"{SAM_VIT_H_BYTES / r['fp32']:,.0f}x | {times[0]:.2f} | {m:.2f} | {p90:.2f} | {vs_d} | {vs_u} |"  # type: ignore[operator]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
