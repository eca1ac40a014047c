"""tools/mix_real_photos.py: labelled real photos join a rendered set's training split, links not copies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from okrainsight.imageio import read_image, read_mask, write_image
from okrainsight.synth import render_dataset, render_scene
from okrainsight.torchdata import OkraSegmentationDataset, read_split_stems

TOOL = Path(__file__).resolve().parent.parent / "tools" / "mix_real_photos.py"


def _read_split(root: Path, name: str) -> list[str]:
    return (root / "splits" / f"{name}.txt").read_text().split()


def test_real_photos_join_train_only_and_renders_are_linked(tmp_path: Path) -> None:
    data = render_dataset(tmp_path / "renders", 10, seed=3, size=(96, 72), workers=1)
    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    (real / "masks").mkdir()
    for i, stem in enumerate(("white_01", "white_02", "pile_01")):
        scene = render_scene(100 + i, (80, 60))
        write_image(real / "images" / f"{stem}.png", scene.image)
        if stem != "pile_01":  # a photo without a mask is skipped
            write_image(real / "masks" / f"{stem}.png", scene.mask)
    negs = tmp_path / "negs"
    negs.mkdir()
    for name in ("01_beans.png", "02_peas.png", "03_cucumber.png"):
        write_image(negs / name, np.full((40, 50, 3), 90, np.uint8))

    out = tmp_path / "mixed"
    run = subprocess.run(
        [sys.executable, str(TOOL), str(data), str(out), "--okra", str(real), "--only", "white_02",
         "--repeat", "3", "--negatives", str(negs), "--odd-negatives", "--negative-repeat", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    real_okra = [f"real_white_02_r{k:02d}" for k in range(3)]
    real_negs = [f"real_{n}_r{k:02d}" for n in ("01_beans", "03_cucumber") for k in range(2)]
    train = _read_split(out, "train")
    assert sorted(set(train) - set(read_split_stems(data, "train"))) == sorted(real_okra + real_negs)
    for name in ("val", "test"):
        assert _read_split(out, name) == read_split_stems(data, name)
    rendered = sorted(p.name for p in (data / "images").iterdir())
    assert all((out / "images" / n).is_symlink() for n in rendered)

    assert (read_mask(out / "masks" / "real_white_02_r01.png") > 0).sum() == (
        read_mask(real / "masks" / "white_02.png") > 0
    ).sum()
    assert read_image(out / "images" / "real_white_02_r00.png").shape == (60, 80, 3)
    assert not read_mask(out / "masks" / "real_03_cucumber_r01.png").any()
    assert json.loads((out / "mix.json").read_text())["okra"] == ["white_02.png"]

    ds = OkraSegmentationDataset(out, "train", (64, 64), (0.5,) * 3, (0.25,) * 3)
    assert len(ds) == len(train)
