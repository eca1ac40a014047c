"""What tiling and flip averaging cost: milliseconds per photo of ``Segmenter.predict_probability``
and of the whole ``Segmenter.segment`` (probability, threshold, pods), for several zoom sets
(:mod:`okrainsight.tiling`), flip sets (:mod:`okrainsight.flips`) and photo sizes. Photos are
rendered scenes resized to each size.

Usage::

    .venv/bin/python bench/bench_zooms.py --model default --zooms 0 1 2 1,2 --flips none h,v,hv \
        --sizes 640x480 1280x720 1920x1440
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2

from okrainsight.flips import parse_flips
from okrainsight.runtime import Segmenter
from okrainsight.synth import render_scene
from okrainsight.tiling import parse_zooms, tile_windows


def _ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--zooms", nargs="+", default=["0", "1", "2", "1,2"], metavar="Z")
    ap.add_argument("--flips", nargs="+", default=["none", "h,v,hv"], metavar="F")
    ap.add_argument("--sizes", nargs="+", default=["640x480", "1280x720", "1920x1440"], metavar="WxH")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    seg = Segmenter.from_path(args.model, threads=args.threads)
    scene = render_scene(7, (512, 384), kind="cloth").image
    mw, mh = seg.input_size
    print(f"model `{args.model}` ({mw}x{mh}), ONNX Runtime, {args.threads} threads, median of {args.runs}")
    print("| photo | zooms | flips | network runs | probability, ms | segment (with pods), ms |")
    print("|---|---|---|---:|---:|---:|")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        photo = cv2.resize(scene, (w, h), interpolation=cv2.INTER_LINEAR)
        for spec in args.zooms:
            zooms = parse_zooms(spec)
            tiles = sum(len(tile_windows(h, w, z, aspect=mw / mh)) for z in zooms)
            for flip_spec in args.flips:
                flips = parse_flips(flip_spec)
                runs = tiles * (1 + len(flips))
                prob = _ms(lambda: seg.predict_probability(photo, zooms=zooms, flips=flips), args.runs)  # noqa: B023
                full = _ms(lambda: seg.segment(photo, zooms=zooms, flips=flips), args.runs)  # noqa: B023
                print(f"| {w}x{h} | {spec} | {flip_spec} | {runs} | {prob:.1f} | {full:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
