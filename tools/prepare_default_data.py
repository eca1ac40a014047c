"""Render the training data of the built-in default model (``make train-default``).

Builds a folder of background photographs, then renders the data set with
``okra synth``. Backgrounds and empty-mask negatives come from two sources:

* the sample photographs that scikit-image ships (everyday scenes: people, a cat,
  coffee, a rocket, bricks, grass, gravel, text ...), always available;
* the real green vegetables of ``../shared/data/real-negatives`` when that folder
  exists (read in place, never copied into the repository): only the odd-numbered
  files (01, 03, ...), so that the even-numbered ones stay unseen for the benchmark.

Usage::

    python tools/prepare_default_data.py --out data/default --n 4000 --seed 1

The recipe is written to ``OUT/recipe.json`` so the model card can name it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_SAMPLES = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "colorwheel", "logo", "camera", "brick", "grass", "gravel", "moon", "page",
    "text", "cat", "checkerboard", "coins", "horse",
)  # fmt: skip


def write_skimage_backgrounds(folder: Path) -> list[str]:
    """Save scikit-image's sample photographs as RGB PNGs into ``folder``; return their names."""
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name in SKIMAGE_SAMPLES:
        try:
            arr = np.asarray(getattr(skimage.data, name)())
        except Exception as exc:  # noqa: BLE001 - a sample missing from this skimage version
            print(f"skipping skimage sample {name}: {exc}", file=sys.stderr)
            continue
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        Image.fromarray(arr[:, :, :3].astype(np.uint8)).save(folder / f"skimage_{name}.png")
        names.append(name)
    return names


def link_real_negatives(source: Path, folder: Path) -> list[str]:
    """Symlink the odd-numbered photos of ``source`` into ``folder`` (nothing is copied)."""
    used = []
    for p in sorted(source.iterdir()):
        m = re.match(r"(\d+)_", p.name)
        if not m or int(m.group(1)) % 2 == 0:
            continue
        dst = folder / p.name
        if not dst.exists():
            os.symlink(p.resolve(), dst)
        used.append(p.name)
    return used


def link_pod_photos(source: Path, folder: Path, stems: list[str]) -> Path:
    """Symlink the named photos of ``source`` (``images/`` + ``masks/``) into ``folder``; return it."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for old in (folder / sub).iterdir():  # links of an earlier --pod-stems
            old.unlink()
    for stem in (s.strip() for s in stems if s.strip()):
        images = [p for p in (source / "images").iterdir() if p.stem == stem]
        mask = source / "masks" / f"{stem}.png"
        if not images or not mask.is_file():
            raise SystemExit(f"{source}: no photo with a mask named {stem!r}")
        for src, sub in ((images[0], "images"), (mask, "masks")):
            if not (folder / sub / src.name).exists():
                os.symlink(src.resolve(), folder / sub / src.name)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/default"))
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", default="384x288")
    ap.add_argument("--negatives", type=Path, default=Path("../shared/data/real-negatives"))
    ap.add_argument("--negative-fraction", type=float, default=0.12)
    ap.add_argument(
        "--pods",
        type=Path,
        default=None,
        help="labelled real photographs (images/ + masks/) to paste pods from (okra synth --pods)",
    )
    ap.add_argument("--pod-fraction", type=float, default=0.2)
    ap.add_argument(
        "--pod-stems",
        default=None,
        help="only these photos of --pods, comma-separated stems (linked into OUT-pods/), "
        "e.g. white_01,white_04_bunch",
    )
    ap.add_argument(
        "--kinds",
        default=None,
        help="scene kinds to draw from (okra synth --kinds; a kind named twice comes twice as often), "
        "e.g. plant,plant,pile,white; default: okra synth's mix",
    )
    args = ap.parse_args()
    if args.pods is not None and not args.pods.is_dir():
        print(f"{args.pods}: no such folder; rendering without real pods", file=sys.stderr)
        args.pods = None
    if args.pods is not None and args.pod_stems:
        pods_dir = args.out.parent / (args.out.name + "-pods")
        args.pods = link_pod_photos(args.pods, pods_dir, args.pod_stems.split(","))

    bgs = args.out.parent / (args.out.name + "-backgrounds")
    samples = write_skimage_backgrounds(bgs)
    real = link_real_negatives(args.negatives, bgs) if args.negatives.is_dir() else []
    cmd = [sys.executable, "-m", "okrainsight", "synth", str(args.out),
           "--n", str(args.n), "--seed", str(args.seed), "--size", args.size,
           "--backgrounds", str(bgs), "--negatives", str(bgs),
           "--negative-fraction", str(args.negative_fraction)]  # fmt: skip
    if args.pods is not None:
        cmd += ["--pods", str(args.pods), "--pod-fraction", str(args.pod_fraction)]
    if args.kinds:
        cmd += ["--kinds", args.kinds]
    print(" ".join(cmd))
    rc = subprocess.call(cmd)
    recipe = {"command": cmd, "skimage_samples": samples, "real_negatives_used": real}
    if args.pods is not None:
        recipe["real_pods_from"] = sorted(p.stem for p in (args.pods / "masks").glob("*.png"))
    (args.out / "recipe.json").write_text(json.dumps(recipe, indent=1) + "\n")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
