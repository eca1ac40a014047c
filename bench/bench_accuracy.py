"""Accuracy of segmentation models on rendered and real photographs (issue 4, item 7).

For each model (a model folder with ``card.json`` + ``model.onnx``, or a built-in name),
run through the torch-free runtime exactly as ``okra segment`` does, and report:

* **synthetic IoU**: pixel IoU over a rendered test set (``render_scene`` seeds that the
  training data never used), plus the share of okra pixels on its distractor-only scenes;
* **real white IoU**: per-image IoU on the white-background photographs of
  ``../shared/data/real-okra`` that have masks (approximate masks, see its README);
* **real negatives**: the share of pixels called okra on the real green vegetables of
  ``../shared/data/real-negatives`` (mean and worst image), split into the odd-numbered
  files (seen as backgrounds/negatives by the default model's training data) and the
  even-numbered ones (never seen);
* **real pods on cloth, composited** (``bench/cloth_composites.py``): the pods of the
  white-background photographs cut out and laid on textiles drawn by that file, 8 each;
  mean IoU (a stand-in for real photos on cloth, which this project does not have);
* **real pods among held-out green vegetables, composited** (``bench/green_composites.py``):
  the same cut-out pods laid on crops of the even-numbered (never seen) real vegetables, 8 each;
  mean IoU (a stand-in for pods among leaves and next to look-alikes);
* **real piles and plant**: the share of pixels called okra (no masks exist; look at the
  overlays written with ``--overlays DIR``);
* **everyday photos never seen** (printed on stderr): the share of pixels called okra on the
  scikit-image and matplotlib sample photos that no training recipe here uses.

The real folders are read in place when they exist and are never copied.

Usage::

    .venv/bin/python bench/bench_accuracy.py --models default runs/other-model --n 120
    .venv/bin/python bench/bench_accuracy.py --models default --zooms 0 1 2 1,2   # tilings side by side
    .venv/bin/python bench/bench_accuracy.py --models default --flips none h h,v,hv   # flip averaging
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from okrainsight.flips import parse_flips
from okrainsight.hysteresis import effective_seed_threshold
from okrainsight.hysteresis import okra_mask as hysteresis_mask
from okrainsight.imageio import read_image, read_mask, write_image
from okrainsight.metrics import confusion
from okrainsight.runtime import Segmenter
from okrainsight.synth import render_scene
from okrainsight.tiling import parse_zooms

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloth_composites import composites  # noqa: E402
from green_composites import green_composites, photo_number  # noqa: E402


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tint okra pixels magenta: (H, W, 3) uint8 in, (H, W, 3) uint8 out."""
    out = image.astype(np.float32)
    tint = np.array([255, 0, 255], np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * tint
    return out.astype(np.uint8)


def okra_mask(seg: Segmenter, image: np.ndarray) -> np.ndarray:
    """``seg.segment(image).mask`` without finding pods (unused here): probability >= threshold,
    with the card's hysteresis seed threshold when it has one (:mod:`okrainsight.hysteresis`)."""
    return hysteresis_mask(seg.predict_probability(image), seg.threshold, seg.seed_threshold)


def synthetic_scores(seg: Segmenter, n: int, size: tuple[int, int], seed: int) -> dict[str, float]:
    tp = fp = fn = 0
    neg_share = []
    for i in range(n):
        scene = render_scene(seed + i, size)
        pred = okra_mask(seg, scene.image)
        gt = scene.mask > 0
        if not gt.any():
            neg_share.append(float(pred.mean()))
            continue
        c = confusion(pred, gt)
        tp, fp, fn = tp + c.tp, fp + c.fp, fn + c.fn
    iou = tp / max(tp + fp + fn, 1)
    return {"synthetic_iou": iou, "synthetic_negative_share": float(np.mean(neg_share)) if neg_share else 0.0}


def real_scores(seg: Segmenter, okra_dir: Path, neg_dir: Path, overlays: Path | None) -> dict[str, object]:
    res: dict[str, object] = {}
    ious = {}
    other = {}
    if okra_dir.is_dir():
        for img_path in sorted((okra_dir / "images").iterdir()):
            image = read_image(img_path)
            pred = okra_mask(seg, image)
            mask_path = okra_dir / "masks" / f"{img_path.stem}.png"
            if mask_path.exists():
                gt = read_mask(mask_path) > 0
                ious[img_path.stem] = confusion(pred, gt).iou()
            else:
                other[img_path.stem] = float(pred.mean())
            if overlays is not None:
                write_image(overlays / f"okra_{img_path.stem}.jpg", overlay(image, pred))
    res["real_white_iou"] = ious
    res["real_other_share"] = other
    shares: dict[str, float] = {}
    if neg_dir.is_dir():
        for p in sorted(neg_dir.iterdir()):
            if p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                continue
            image = read_image(p)
            pred = okra_mask(seg, image)
            shares[p.name] = float(pred.mean())
            if overlays is not None:
                write_image(overlays / f"neg_{p.stem}.jpg", overlay(image, pred))
    res["negative_share"] = shares
    return res


def composite_scores(seg: Segmenter, cloth: list[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean IoU per source photo over composites (:mod:`cloth_composites`, :mod:`green_composites`)."""
    per: dict[str, list[float]] = {}
    for stem, image, gt in cloth:
        per.setdefault(stem, []).append(confusion(okra_mask(seg, image), gt).iou())
    return {stem: float(np.mean(v)) for stem, v in per.items()}


def per_photo_text(scores: dict[str, float]) -> str:
    """``"mean (per photo, ...)"`` of per-photo IoUs, or ``n/a``."""
    if not scores:
        return "n/a"
    return f"{np.mean(list(scores.values())):.3f} ({', '.join(f'{v:.2f}' for v in scores.values())})"


def seen_in_training(name: str) -> bool:
    """Whether the default recipes train on the real negative ``name``: the odd-numbered files
    (``tools/prepare_default_data.py``); the even-numbered ones are held out."""
    return (photo_number(name) or 0) % 2 == 1


def everyday_photos() -> list[Path]:
    """Everyday photographs without okra that no training recipe here uses: the scikit-image
    samples outside ``tools/prepare_default_data.SKIMAGE_SAMPLES`` and matplotlib's sample photos
    (whichever of them the installed packages ship)."""
    import matplotlib
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    samples = ("motorcycle_left.png", "motorcycle_right.png", "chessboard_RGB.png", "color.png")
    names = [sk / n for n in samples]
    names += [mpl / "grace_hopper.jpg", mpl / "Minduka_Present_Blue_Pack.png"]
    return [p for p in names if p.is_file()]


def everyday_shares(seg: Segmenter) -> dict[str, float]:
    """Share of pixels called okra on each of :func:`everyday_photos`."""
    return {p.name: float(okra_mask(seg, read_image(p)).mean()) for p in everyday_photos()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["default"])
    ap.add_argument("--n", type=int, default=120, help="rendered test scenes")
    ap.add_argument("--size", default="384x288")
    ap.add_argument("--seed", type=int, default=900_000, help="first render seed of the test set")
    ap.add_argument("--real-okra", type=Path, default=HERE.parent / "shared" / "data" / "real-okra")
    ap.add_argument("--negatives", type=Path, default=HERE.parent / "shared" / "data" / "real-negatives")
    ap.add_argument("--overlays", type=Path, default=None, help="write overlays of the real photos here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=None, help="override the cards' thresholds")
    ap.add_argument(
        "--seed-threshold",
        type=float,
        default=None,
        help="override the cards' hysteresis seed thresholds (okrainsight.hysteresis); 0 = plain threshold",
    )
    ap.add_argument(
        "--zooms",
        nargs="+",
        default=[None],
        metavar="Z",
        help="tilings to compare, each comma-separated (okrainsight.tiling), e.g. --zooms 0 1 1,2 "
        "(default: each card's own)",
    )
    ap.add_argument(
        "--flips",
        nargs="+",
        default=[None],
        metavar="F",
        help="flip averagings to compare, each comma-separated or 'none' (okrainsight.flips), e.g. "
        "--flips none h,v,hv (default: each card's own)",
    )
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    cols = [
        "model", "synthetic IoU", "synthetic negatives: okra share", "real white IoU (mean; per photo)",
        "real negatives held out: mean / worst", "real negatives seen: mean / worst",
        "real pods on cloth, composited: IoU (per photo)",
        "real pods among held-out green vegetables, composited: IoU (per photo)", "piles, plant: okra share",
    ]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|---|---:|---:|---|---|---|---|---|---|")
    cloth = composites(args.real_okra) if args.real_okra.is_dir() else []
    among_green = green_composites(args.real_okra, args.negatives)
    runs = [(spec, z, f) for spec in args.models for z in args.zooms for f in args.flips]
    for spec, zoom, flips in runs:
        seg = Segmenter.from_path(
            spec,
            threads=args.threads,
            zooms=None if zoom is None else parse_zooms(zoom),
            flips=None if flips is None else parse_flips(flips),
        )
        if args.threshold is not None:
            seg.card.threshold = args.threshold
        if args.seed_threshold is not None:
            seg.card.seed_threshold = effective_seed_threshold(seg.card.threshold, args.seed_threshold)
        syn = synthetic_scores(seg, args.n, (w, h), args.seed)
        ov = None
        if args.overlays is not None:
            ov = args.overlays / (
                Path(spec).name
                + ("" if zoom is None else f"-zoom{zoom}")
                + ("" if flips is None else f"-flips{flips.replace(',', '')}")
            )
            ov.mkdir(parents=True, exist_ok=True)
        real = real_scores(seg, args.real_okra, args.negatives, ov)
        ious = real["real_white_iou"]
        neg = real["negative_share"]
        held = [v for k, v in neg.items() if not seen_in_training(k)]
        seen = [v for k, v in neg.items() if seen_in_training(k)]

        def fmt(vals: list[float]) -> str:
            return f"{100 * np.mean(vals):.1f}% / {100 * max(vals):.1f}%" if vals else "n/a"

        white = per_photo_text(ious)
        other = ", ".join(f"{k} {100 * v:.0f}%" for k, v in real["real_other_share"].items())
        cloth_text = per_photo_text(composite_scores(seg, cloth))
        green_text = per_photo_text(composite_scores(seg, among_green))
        seed = "" if seg.seed_threshold is None else f", seeds {seg.seed_threshold:g}"
        flipped = f", flips {','.join(seg.flips)}" if seg.flips else ""
        tiles = ",".join(f"{z:g}" for z in seg.zooms)
        name = f"{spec} (zooms {tiles}{flipped}, threshold {seg.threshold:g}{seed})"
        print(f"| `{name}` | {syn['synthetic_iou']:.3f} | {100 * syn['synthetic_negative_share']:.2f}% "
              f"| {white} | {fmt(held)} | {fmt(seen)} | {cloth_text} | {green_text} | {other} |")  # fmt: skip
        for k, v in sorted(neg.items()):
            print(f"    negative {k}: {100 * v:.2f}% okra", file=sys.stderr)
        everyday = list(everyday_shares(seg).values())
        print(f"    everyday photos never seen ({len(everyday)}): {fmt(everyday)} okra", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
