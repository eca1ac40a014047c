"""Render the sample photos of ``examples/`` that ``make demo`` segments.

Six renders of the current renderer (512x384, JPEG quality 88): a pod on white, a shop row,
a market pile, a pod on the plant, pods on cloth, and look-alikes without okra. Seeds are fixed,
so re-running gives the same files for the same renderer version.

Usage::

    .venv/bin/python tools/make_examples.py [--out examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from okrainsight.imageio import write_image
from okrainsight.synth import render_scene

#: (file stem, scene kind, seed)
EXAMPLES = (
    ("01_white", "white", 11),
    ("02_shop", "shop", 12),
    ("03_pile", "pile", 13),
    ("04_plant", "plant", 14),
    ("05_cloth", "cloth", 15),
    ("06_negative", "negative", 16),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("examples"))
    args = ap.parse_args()
    for stem, kind, seed in EXAMPLES:
        scene = render_scene(seed, (512, 384), kind)
        write_image(args.out / f"{stem}.jpg", scene.image, quality=88)
        print(f"{args.out / stem}.jpg: {kind}, {len(scene.pods)} pods")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
