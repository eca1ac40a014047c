"""Mix labelled real photographs into a rendered training set (a new dataset folder).

The rendered set is not modified: ``OUT/images`` and ``OUT/masks`` link to its files
(symbolic links, nothing copied), and the real photographs are added as upright PNGs
with their masks, each repeated ``--repeat`` times under its own stem
(``real_<stem>_r<k>``) so that a few photographs weigh enough against thousands of
renders (one file, the other repeats link to it); the training augmentation makes every
repeat a different view. Real photos without okra (``--negatives``) join with empty masks
in the same way.

``OUT/splits/`` keeps the rendered set's grouped split (``okra dataset split`` rules) and
puts every real photo in ``train`` only, so validation stays purely synthetic.
``OUT/mix.json`` records which photographs went in, for the model card.

Usage::

    python tools/mix_real_photos.py data/default-r5 data/default-r5-real \\
        --okra ../shared/data/real-okra --only white_01 white_04 --repeat 40 \\
        --negatives ../shared/data/real-negatives --odd-negatives --negative-repeat 10

Photographs are read in place (``../shared/data`` is never copied into the repository;
``OUT`` is a data folder outside it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np

from okrainsight.dataset import DatasetLayout
from okrainsight.imageio import iter_image_files, read_image, read_mask, write_image
from okrainsight.torchdata import read_split_stems


def _link_rendered(data: Path, out: Path) -> dict[str, list[str]]:
    src = DatasetLayout(data).require()
    dst = DatasetLayout(out)
    for sub in (dst.images_dir, dst.masks_dir):
        sub.mkdir(parents=True, exist_ok=True)
    for img in src.image_paths():
        for a, b in ((img, dst.images_dir / img.name), (src.mask_path(img.stem), dst.mask_path(img.stem))):
            if not b.exists():
                os.symlink(a.resolve(), b)
    return {name: read_split_stems(data, name) for name in ("train", "val", "test")}


def _add(out: Path, stem: str, image: np.ndarray, mask: np.ndarray, repeat: int) -> list[str]:
    """Write ``image`` and ``mask`` once as ``real_<stem>_r00``; the other repeats link to them."""
    layout = DatasetLayout(out)
    stems = [f"real_{stem}_r{k:02d}" for k in range(repeat)]
    first_image, first_mask = layout.images_dir / f"{stems[0]}.png", layout.mask_path(stems[0])
    write_image(first_image, image)
    write_image(first_mask, mask)
    for s in stems[1:]:
        for first, link in ((first_image, layout.images_dir / f"{s}.png"), (first_mask, layout.mask_path(s))):
            if not link.is_symlink():
                os.symlink(first.name, link)
    return stems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="rendered dataset folder (left unchanged)")
    ap.add_argument("out", type=Path, help="new dataset folder to write")
    ap.add_argument("--okra", type=Path, required=True, help="folder with images/ and masks/ of real okra")
    ap.add_argument("--only", nargs="*", default=None, help="stems of --okra to use (default: all)")
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--negatives", type=Path, default=None, help="folder of real photos without okra")
    ap.add_argument("--odd-negatives", action="store_true", help="only files numbered 01, 03, ...")
    ap.add_argument("--negative-repeat", type=int, default=10)
    args = ap.parse_args()

    splits = _link_rendered(args.data, args.out)
    real_stems: list[str] = []
    used: dict[str, list[str]] = {"okra": [], "negatives": []}
    for img_path in sorted((args.okra / "images").iterdir()):
        mask_path = args.okra / "masks" / f"{img_path.stem}.png"
        if not mask_path.is_file() or (args.only is not None and img_path.stem not in args.only):
            continue
        image = read_image(img_path)
        mask = read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            raise SystemExit(f"{mask_path}: mask is {mask.shape[::-1]}, image is {image.shape[1::-1]}")
        real_stems += _add(args.out, img_path.stem, image, mask, args.repeat)
        used["okra"].append(img_path.name)
    if args.negatives is not None:
        for p in iter_image_files([args.negatives]):
            m = re.match(r"(\d+)_", p.name)
            if args.odd_negatives and not (m and int(m.group(1)) % 2 == 1):
                continue
            image = read_image(p)
            empty = np.zeros(image.shape[:2], np.uint8)
            real_stems += _add(args.out, p.stem, image, empty, args.negative_repeat)
            used["negatives"].append(p.name)
    split_dir = args.out / "splits"
    split_dir.mkdir(exist_ok=True)
    splits["train"] = splits["train"] + real_stems
    for name, stems in splits.items():
        (split_dir / f"{name}.txt").write_text("".join(f"{s}\n" for s in stems))
    record = {"rendered": str(args.data), "repeat": args.repeat, "negative_repeat": args.negative_repeat}
    record.update(used)
    (args.out / "mix.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{args.out}: {len(splits['train'])} train ({len(real_stems)} real), "
          f"{len(splits['val'])} val, {len(splits['test'])} test; real okra {used['okra']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
