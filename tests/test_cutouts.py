"""Real pods cut out of labelled photos and pasted into rendered scenes (okra synth --pods)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from okrainsight.errors import ConfigError
from okrainsight.imageio import read_image, read_mask, write_image, write_mask
from okrainsight.synth import render_dataset
from okrainsight.synth.cutouts import load_cutouts, render_cutout_scene

MAGENTA = (255, 0, 255)  # no renderer colour comes near it: pasted pixels are easy to find


def labelled_folder(root: Path, n: int = 2) -> Path:
    """``n`` photos of a magenta ellipse on grey, with exact masks (images/ + masks/)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = np.full((120, 160, 3), 128, np.uint8)
        mask = np.zeros((120, 160), np.uint8)
        cv2.ellipse(mask, (80, 60), (60, 14 + 4 * i), 20, 0, 360, 255, -1)
        img[mask > 0] = MAGENTA
        write_image(root / "images" / f"photo_{i}.png", img)
        write_mask(root / "masks" / f"photo_{i}.png", mask)
    return root


def magenta(image: np.ndarray) -> np.ndarray:
    r, g, b = (image[..., k].astype(int) for k in range(3))
    return (r - g > 60) & (b - g > 60)


def test_pasted_pixels_are_exactly_the_mask(tmp_path: Path) -> None:
    cutouts = load_cutouts(labelled_folder(tmp_path / "lab"))
    assert [c.source for c in cutouts] == ["photo_0", "photo_1"]
    for seed in range(6):
        scene = render_cutout_scene(seed, (192, 144), cutouts)
        assert scene.kind == "cutout"
        pasted = [p for p in scene.pods if "cutout" in p]
        assert pasted and all(p["cutout"] in {"photo_0", "photo_1"} for p in pasted)
        pink = magenta(scene.image)
        mask = scene.mask > 0
        assert pink.sum() > 100
        # every clearly magenta pixel is in the mask (inner pixels; edges blend with the backdrop)
        inner = cv2.erode(pink.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert mask[inner].mean() > 0.98
        for p in pasted:
            ids = scene.instances == p["id"]
            assert ids.sum() == p["area_px"] and magenta(scene.image)[ids].mean() > 0.8
        # mask and instances agree; no distractor pixel is in the mask
        assert np.array_equal(mask, scene.instances > 0)
        assert not (scene.distractor_mask & mask).any()


def test_cutout_scenes_are_deterministic(tmp_path: Path) -> None:
    cutouts = load_cutouts(labelled_folder(tmp_path / "lab"))
    a, b = (render_cutout_scene(11, (128, 96), cutouts) for _ in range(2))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances) and a.pods == b.pods


def test_bad_pods_folders_are_refused_or_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match="images/ and masks/"):
        load_cutouts(tmp_path / "nothing")
    lab = labelled_folder(tmp_path / "lab", n=1)
    (lab / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    write_image(lab / "images" / "unlabelled.png", np.zeros((20, 20, 3), np.uint8))
    write_image(lab / "images" / "empty.png", np.zeros((20, 20, 3), np.uint8))
    write_mask(lab / "masks" / "empty.png", np.zeros((20, 20), np.uint8))
    with caplog.at_level(logging.WARNING):
        cutouts = load_cutouts(lab)
    assert [c.source for c in cutouts] == ["photo_0"]
    text = caplog.text
    assert (
        "broken.jpg" in text
        and "unlabelled.png: no mask for this image" in text
        and "the mask is empty" in text
    )
    only_bad = tmp_path / "bad"
    (only_bad / "images").mkdir(parents=True)
    (only_bad / "images" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="no image with a usable okra mask"):
        load_cutouts(only_bad)


def test_synth_with_pods_writes_cutout_scenes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from okrainsight.cli import app

    lab = labelled_folder(tmp_path / "lab")
    out = tmp_path / "ds"
    args = ["synth", str(out), "--n", "12", "--seed", "3", "--size", "96x72", "--workers", "1"]
    result = CliRunner().invoke(app, [*args, "--pods", str(lab), "--pod-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    cut = [r for r in records if r["kind"] == "cutout"]
    assert 2 <= len(cut) <= 10
    for r in cut:
        mask = read_mask(out / "masks" / f"{r['stem']}.png") > 0
        assert mask.any() and any(p.get("cutout") for p in r["pods"])
        assert magenta(read_image(out / "images" / f"{r['stem']}.jpg"))[mask].mean() > 0.3
    # the other images are exactly those rendered without --pods
    plain = render_dataset(tmp_path / "plain", 12, 3, (96, 72), workers=1, progress=False)
    for r in records:
        if r["kind"] != "cutout":
            assert (out / "masks" / f"{r['stem']}.png").read_bytes() == (
                plain / "masks" / f"{r['stem']}.png"
            ).read_bytes()


def test_decoys_of_real_photos_are_never_okra(tmp_path: Path) -> None:
    cutouts = load_cutouts(labelled_folder(tmp_path / "lab"))
    cyan = np.zeros((80, 120, 3), np.uint8)
    cyan[..., 1:] = 255  # a "photo without okra" in a colour that few backdrops come near
    seen = skipped = 0
    for seed in range(10):
        scene = render_cutout_scene(seed, (160, 120), cutouts, decoys=[cyan])
        assert np.array_equal(scene.mask > 0, scene.instances > 0)
        r, g, b = (scene.image[..., k].astype(int) for k in range(3))
        is_cyan = (g - r > 120) & (b - r > 120)
        inner = cv2.erode(is_cyan.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        # at most a few soft-edge pixels: a decoy blurred to match the photo lays a cyan fringe
        # over the pod beneath it (seeds 0-59 of renderer v11: at most 0.3% of the cyan pixels)
        assert not inner.any() or (scene.mask > 0)[inner].mean() < 0.01
        if (inner & ~scene.distractor_mask).mean() > 0.05:
            # the camera's vivid style (renderer v10) turned a teal backdrop cyan too: colour can't tell
            skipped += 1
            continue
        seen += int(inner.sum())
        assert scene.distractor_mask[inner].mean() > 0.95
    assert skipped <= 2 and seen > 500
