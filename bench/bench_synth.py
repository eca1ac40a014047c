"""Renderer throughput: images per second of ``okra synth`` (render + encode + write).

Usage:  python bench/bench_synth.py [--n 100] [--size 512x384] [--workers N] [--seed 0] [--per-kind 5]

Writes the figures to stdout; they go in docs/benchmarks.md under "Renderer throughput".
Also reports the single-process wall time per scene kind and the CPU time per image
(``time.process_time`` in one process), which does not depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from okrainsight.synth import KINDS, render_dataset, render_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", default="512x384")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--per-kind", type=int, default=5, help="scenes per kind for the per-kind timing (0 = skip)"
    )
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    if args.per_kind:
        for kind in KINDS:
            t0 = time.perf_counter()
            for i in range(args.per_kind):
                render_scene(10_000 + i, (w, h), kind)
            dt = (time.perf_counter() - t0) / args.per_kind
            print(f"  {kind:9s} {dt * 1000:7.1f} ms/scene (1 process)")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        render_dataset(tmp, args.n, args.seed, (w, h), workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
    # CPU time per image, in this process (workers=1): independent of other load on the machine.
    n_cpu = max(1, args.n // 4)
    with tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        render_dataset(tmp, n_cpu, args.seed, (w, h), workers=1, progress=False)
        cpu = (time.process_time() - c0) / n_cpu
    ncpu = os.cpu_count() or 1
    used = min(ncpu, args.workers)
    print(
        f"renderer throughput: {args.n / dt:.2f} images/s at {w}x{h} with {args.workers} workers "
        f"({args.n} images in {dt:.1f} s, {ncpu} CPUs, load average {os.getloadavg()[0]:.1f} after the run)"
    )
    print(
        f"CPU time: {cpu * 1000:.0f} ms per image (render + encode + write, 1 process, {n_cpu} images), "
        f"i.e. {used / cpu:.2f} images/s on {used} free CPUs"
    )


if __name__ == "__main__":
    main()
