"""Install a trained run as the built-in default model (``make train-default`` runs this).

Writes ``src/okrainsight/models/default/``:

* ``model.safetensors``: the weights rounded to float16 (halves the package size; the
  student computes in float32 after loading, see :func:`okrainsight.checkpoint.load_checkpoint`);
* ``model.onnx``: exported from exactly those rounded weights with the ONNX export wrapper
  (uint8 image in, probability and mask out) and checked for parity in ONNX Runtime; with
  ``--int8-weights`` its convolution weights are stored as int8 per output channel and computed
  in float32 (:func:`okrainsight.export.quantise_conv_weights`: a quarter of the bytes, the same
  speed; the IoU drop against the fp32 file is measured and at most 1 point), which is how a
  width-0.75 student fits the 2 MB budget;
* ``card.json``: the run's card, named ``okra-default``, with the training recipe.

Usage::

    python tools/install_default_model.py runs/default [--recipe data/default/recipe.json ...] \
        [--threshold 0.4] [--seed-threshold 0.85] [--zooms 1,2] [--flips h,v,hv] [--int8-weights]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from okrainsight.checkpoint import ONNX_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from okrainsight.export import export_onnx, export_onnx_reduced
from okrainsight.flips import parse_flips
from okrainsight.hysteresis import check_seed_threshold
from okrainsight.runtime import BUILTIN_DIR
from okrainsight.tiling import parse_zooms

MAX_BYTES = 2 * 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="training run folder (card.json + model.safetensors)")
    ap.add_argument(
        "--recipe",
        type=Path,
        action="append",
        default=None,
        help="recipe.json of the training data; repeat for several steps (keyed by the data folder's name)",
    )
    ap.add_argument("--name", default="default")
    ap.add_argument("--threshold", type=float, default=None, help="card threshold (default: the run's)")
    ap.add_argument(
        "--seed-threshold",
        type=float,
        default=None,
        help="card hysteresis seed threshold (okrainsight.hysteresis; default: the run's, usually none)",
    )
    ap.add_argument(
        "--zooms",
        default=None,
        help="card tiling, comma-separated (okrainsight.tiling; default: the run's), e.g. 1,2",
    )
    ap.add_argument(
        "--flips",
        default=None,
        help="card flip averaging, comma-separated or 'none' (okrainsight.flips; default: the run's), "
        "e.g. h,v,hv",
    )
    ap.add_argument(
        "--int8-weights",
        action="store_true",
        help="store model.onnx's convolution weights as int8 (float32 compute), for students "
        "whose fp32 ONNX file does not fit the 2 MB budget",
    )
    args = ap.parse_args()

    model, card = load_checkpoint(args.run)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    card.name = f"okra-{args.name}"
    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            raise SystemExit(f"--threshold {args.threshold}: must lie between 0 and 1")
        card.extra["trained_threshold"] = card.threshold
        card.threshold = args.threshold
    if args.seed_threshold is not None:
        try:
            card.seed_threshold = check_seed_threshold(card.threshold, args.seed_threshold)
        except ValueError as exc:
            raise SystemExit(f"--seed-threshold: {exc}") from exc
    if args.zooms is not None:
        try:
            card.zooms = parse_zooms(args.zooms)
        except ValueError as exc:
            raise SystemExit(f"--zooms: {exc}") from exc
    if args.flips is not None:
        try:
            card.flips = parse_flips(args.flips)
        except ValueError as exc:
            raise SystemExit(f"--flips: {exc}") from exc
    recipes = list(args.recipe or [])
    missing = [str(r) for r in recipes if not r.is_file()]
    if missing:
        raise SystemExit(f"--recipe: no such file: {', '.join(missing)}")
    names = [r.parent.name for r in recipes]
    if len(set(names)) != len(names):
        raise SystemExit(f"--recipe: two recipes from folders of one name ({', '.join(names)})")
    if len(recipes) == 1:  # one recipe as it is (the cards of v0.4 and before)
        card.extra["training_data_recipe"] = json.loads(recipes[0].read_text())
    elif recipes:  # several: keyed by their data folder's name
        card.extra["training_data_recipe"] = {r.parent.name: json.loads(r.read_text()) for r in recipes}

    if args.int8_weights:
        card.extra["onnx_weights"] = "int8 per output channel, float32 compute (quantise_conv_weights)"
    out = BUILTIN_DIR / args.name
    with tempfile.TemporaryDirectory(dir=BUILTIN_DIR) as tmp:
        staging = Path(tmp) / args.name
        save_checkpoint(staging, model.half(), card, card_indent=None)  # one line: the 2 MB budget
        model.float()
        if args.int8_weights:
            result = export_onnx_reduced(model, card, staging / ONNX_FILE, precision="int8w")
            print(f"ONNX int8 weights: IoU drop {result.details['drop_points']:.2f} points; {result}")
        else:
            result = export_onnx(model, card, staging / ONNX_FILE)
            print(f"ONNX parity: {result}")
        total = sum(f.stat().st_size for f in staging.iterdir())
        if total > MAX_BYTES:
            raise SystemExit(f"{staging}: {total:,} bytes, above the 2 MB budget of a built-in model")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    sizes = {f.name: f.stat().st_size for f in sorted(out.iterdir())}
    print(f"installed {out}: {sizes}")
    # the float16 weights must load back into the float32 student
    reloaded, _ = load_checkpoint(out)
    if next(reloaded.parameters()).dtype != torch.float32:
        raise SystemExit(f"{out / WEIGHTS_FILE}: float16 weights did not load into a float32 student")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
