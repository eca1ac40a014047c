"""Make ``docs/synth-sheet.png``: a contact sheet of 24 renders, masks outlined on half of them.

Usage:  python bench/make_synth_sheet.py [--out docs/synth-sheet.png] [--seed 0] [--size 512x384]

Tiles cycle through the scene kinds; every other tile has its okra mask outlined in magenta
and the distractors (front-most pixels) outlined in cyan, with the kind written in a corner.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from okrainsight.imageio import write_image
from okrainsight.synth import KINDS, render_scene

COLS, ROWS = 6, 4
TILE = (320, 240)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/synth-sheet.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="512x384")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    kinds = list(KINDS)
    # Show the original's setting and the hard cases more than once.
    order = kinds + [
        "white",
        "pile",
        "plant",
        "negative",
        "negative",
        "hands",
        "wood",
        "cloth",
        "pile",
        "white",
        "plate",
        "negative",
        "bunch",
    ]
    tiles = []
    for i, kind in enumerate(order[: COLS * ROWS]):
        scene = render_scene(args.seed * 1000 + i, (w, h), kind)
        img = scene.image.copy()
        if i % 2 == 1:
            for m, col in ((scene.mask > 0, (255, 0, 255)), (scene.distractor_mask, (0, 255, 255))):
                contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(img, contours, -1, col, max(1, w // 256))
        tile = cv2.resize(img, TILE, interpolation=cv2.INTER_AREA)
        label = f"{kind} ({len(scene.pods)})"
        cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    rows = [np.hstack(tiles[r * COLS : (r + 1) * COLS]) for r in range(ROWS)]
    sheet = np.vstack(rows)
    write_image(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
