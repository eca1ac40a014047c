"""Training-data throughput: where augmentation runs (``okra train --augment-on loader|device``).

Usage:  python bench/bench_augment.py [--n 200] [--size 384x288] [--input 256] [--batch 64]

Renders ``--n`` scenes into a temporary folder, then measures in this one process (one thread,
as a data-loading worker has):

* ``loader``: ms per training item with the per-image torchvision ``transforms.v2`` pipeline
  (decode, affine, crop, flips, colour, blur, JPEG, noise, normalise);
* ``device``: ms per raw item (decode at the canvas size, JPEG re-encode with probability
  ``jpeg``) plus ms per image of ``augment_batch`` on whole batches, on the CPU and, when
  there is one, on the GPU.

Images per second per loader worker is 1000 / (ms per item); a GPU run with W workers is
bounded by about W times that. The figures go in docs/benchmarks.md, "Training data throughput".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from okrainsight.batch_augment import augment_batch
from okrainsight.checkpoint import IMAGENET_MEAN, IMAGENET_STD
from okrainsight.synth import render_dataset
from okrainsight.torchdata import AugmentConfig, OkraSegmentationDataset
from okrainsight.training import make_config

#: the augmentation strengths of the GPU recipe (configs/default-gpu.yaml)
AUGMENT = AugmentConfig(
    **make_config(Path(__file__).resolve().parents[1] / "configs" / "default-gpu.yaml").augment
)


def per_item_ms(ds: OkraSegmentationDataset, n: int) -> float:
    ds[0]  # warm-up: imports, first decode
    t0 = time.perf_counter()
    for i in range(n):
        ds[i % len(ds)]
    return (time.perf_counter() - t0) / n * 1000


def batch_ms(ds: OkraSegmentationDataset, batch: int, size: int, device: str, rounds: int = 5) -> float:
    items = [ds[i % len(ds)] for i in range(batch)]
    b = {k: torch.stack([it[k] for it in items]).to(device) for k in ("image", "mask", "soft")}

    def once() -> None:
        augment_batch(b["image"], b["mask"], b["soft"], (size, size), AUGMENT, IMAGENET_MEAN, IMAGENET_STD)

    once()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(rounds):
        once()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / (rounds * batch) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="rendered scenes (and items timed)")
    ap.add_argument("--size", default="384x288", help="render size WIDTHxHEIGHT (the canvas)")
    ap.add_argument("--input", type=int, default=256, help="network input (square)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        render_dataset(tmp, args.n, args.seed, (w, h), workers=None, progress=False)
        common = dict(size_wh=(args.input, args.input), mean=IMAGENET_MEAN, std=IMAGENET_STD, train=True)
        loader = OkraSegmentationDataset(tmp, "all", augment=AUGMENT, **common)
        raw = OkraSegmentationDataset(tmp, "all", augment=AUGMENT, raw_canvas=(w, h), **common)
        t_loader = per_item_ms(loader, args.n)
        t_raw = per_item_ms(raw, args.n)
        t_cpu = batch_ms(raw, args.batch, args.input, "cpu")
        t_gpu = batch_ms(raw, args.batch, args.input, "cuda") if torch.cuda.is_available() else None
    print(f"{args.n} renders at {w}x{h} -> {args.input}x{args.input}, one thread")
    print("| where | loader worker, ms/image | batch augmentation, ms/image | images/s per worker |")
    print("|---|---:|---:|---:|")
    print(f"| loader (transforms.v2) | {t_loader:.2f} | - | {1000 / t_loader:.0f} |")
    print(f"| device, batch on the CPU | {t_raw:.2f} | {t_cpu:.2f} | {1000 / t_raw:.0f} (decode only) |")
    if t_gpu is not None:
        print(f"| device, batch on the GPU | {t_raw:.2f} | {t_gpu:.3f} | {1000 / t_raw:.0f} (decode only) |")
    else:
        print("(no GPU here: the GPU column is measured by tools/gpu_round.sh on a lent machine)")


if __name__ == "__main__":
    main()
