"""Every student trained with the same data, augmentation and budget, then scored side by side.

Issue 4, item 7.

For each student: ``okra train`` from scratch (no pretrained weights) on one dataset folder
with one config, stopped by the same wall-clock budget (``--minutes``, Lightning's
``max_time``) on this machine; the learning rate is held near its peak (cosine decay over a
nominal epoch count that the budget never reaches), so no student gets a schedule tuned to
its speed. The best epoch's weights are exported to ONNX (parity-checked) and scored
exactly as ``bench/bench_accuracy.py`` scores the default model: pixel IoU on held-out
renders, IoU on the white-background real photographs, and the share of okra pixels on the
real green vegetables (read in place when ``../shared/data`` exists).

On a 2-core CPU a fixed budget favours fast students: a large one sees far fewer images.
That is the point of the comparison (accuracy per unit of training on the hardware at
hand), not a statement about each architecture's ceiling.

Usage::

    .venv/bin/python bench/bench_train_students.py DATA --out bench-out/students --minutes 5 \\
        --students okra_lraspp_small okra_unet_tiny deeplabv3_mobilenet_v3_large u2netp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_accuracy  # noqa: E402  (sibling script: the same scoring as the default model's bench)

from okrainsight.runtime import Segmenter  # noqa: E402

ORIGINAL = {"deeplabv3_mobilenet_v3_large", "u2net", "u2netp"}


def train_one(data: Path, run: Path, arch: str, args: argparse.Namespace) -> None:
    """``okra train`` in this process: ``--config`` with the shared budget and short epochs
    (validation every ``--epoch-batches``) laid over it (:func:`okrainsight.training.make_config`)."""
    from okrainsight.training import make_config, train

    overrides = {
        "data": str(data),
        "out": str(run),
        "arch": arch,
        "epochs": 10_000,  # the time budget ends training; the cosine decay stays near its peak
        "max_minutes": args.minutes,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "limit_train_batches": args.epoch_batches,
        "limit_val_batches": args.val_batches,
        "patience": 10_000,
        "progress": False,
        "seed": 0,
    }
    train(make_config(args.config, overrides))


def export_one(run: Path) -> Path:
    """``model.onnx`` into the run folder unless it is there (:func:`okrainsight.export.export_onnx`
    checks parity and raises when it fails)."""
    from okrainsight.checkpoint import ONNX_FILE, load_checkpoint
    from okrainsight.export import export_onnx

    if not (run / ONNX_FILE).is_file():  # a finished run is not exported again on a rerun
        model, card = load_checkpoint(run)
        export_onnx(model, card, run / ONNX_FILE)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="dataset folder (the same for every student)")
    ap.add_argument("--out", type=Path, default=Path("bench-out/students"))
    ap.add_argument(
        "--students", nargs="+", default=["okra_lraspp_small", "deeplabv3_mobilenet_v3_large", "u2netp"]
    )
    ap.add_argument("--config", type=Path, default=HERE.parent / "configs" / "default.yaml")
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget per student")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epoch-batches", type=int, default=10, help="training batches per (short) epoch")
    ap.add_argument("--val-batches", type=int, default=5, help="validation batches per epoch")
    ap.add_argument("--n", type=int, default=120, help="held-out renders scored")
    ap.add_argument("--real-okra", type=Path, default=HERE.parent.parent / "shared" / "data" / "real-okra")
    ap.add_argument(
        "--negatives", type=Path, default=HERE.parent.parent / "shared" / "data" / "real-negatives"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for arch in args.students:
        run = args.out / arch
        if not (run / "card.json").is_file():
            train_one(args.data, run, arch, args)
        export_one(run)
        card = json.loads((run / "card.json").read_text())
        seg = Segmenter.from_path(run, threads=2)
        syn = bench_accuracy.synthetic_scores(seg, args.n, (384, 288), 900_000)
        real = bench_accuracy.real_scores(seg, args.real_okra, args.negatives, None)
        white = list(real["real_white_iou"].values())
        held = [v for k, v in real["negative_share"].items() if not bench_accuracy.seen_in_training(k)]
        rows.append({
            "student": arch,
            "origin": "original" if arch in ORIGINAL else "okrainsight",
            "epochs": card["metrics"].get("epochs"),
            "images_seen": (card["metrics"].get("epochs") or 0) * args.epoch_batches * args.batch_size,
            "val_iou": card["metrics"].get("val_iou"),
            "synthetic_iou": syn["synthetic_iou"],
            "real_white_iou": float(np.mean(white)) if white else None,
            "unseen_vegetables_mean": float(np.mean(held)) if held else None,
            "unseen_vegetables_worst": float(max(held)) if held else None,
        })  # fmt: skip
        (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print(f"budget: {args.minutes} min per student, from scratch, batch {args.batch_size}, lr {args.lr}, "
          f"config {args.config.name}, data {args.data}")  # fmt: skip
    cols = ["student", "origin", "images seen", "val IoU", "held-out renders IoU", "real white IoU",
            "unseen vegetables mean / worst"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|---|---|--:|--:|--:|--:|---|")
    for r in rows:
        cells = [f"`{r['student']}`", r["origin"], f"{r['images_seen']:,}", num(r["val_iou"]),
                 num(r["synthetic_iou"]), num(r["real_white_iou"]),
                 f"{pct(r['unseen_vegetables_mean'])} / {pct(r['unseen_vegetables_worst'])}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
