"""The ``augment.background`` step: okra kept pixel for pixel, its surrounding made green."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from okrainsight.background_swap import MODES, swap_background
from okrainsight.imageio import write_image, write_mask, write_soft
from okrainsight.torchdata import AugmentConfig, OkraSegmentationDataset
from okrainsight.training import make_config


def white_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A near-white table with a grey shadow band, a red chilli-like blob and one green pod."""
    rng = np.random.default_rng(seed)
    img = np.full((60, 80, 3), 235, np.uint8)
    img[40:50] = 150
    cv2.ellipse(img, (20, 15), (10, 4), 20.0, 0, 360, (200, 30, 20), -1)
    mask = np.zeros((60, 80), np.uint8)
    cv2.ellipse(mask, (50, 30), (22, 6), 30.0, 0, 360, 255, -1)
    img[mask > 0] = (rng.integers(60, 110), rng.integers(120, 170), rng.integers(30, 70))
    return img, mask


def greenness(pixels: np.ndarray) -> float:
    """Mean of G minus the larger of R and B over ``(N, 3)`` pixels."""
    p = pixels.astype(np.float32)
    return float((p[:, 1] - np.maximum(p[:, 0], p[:, 2])).mean())


@pytest.mark.parametrize("mode", MODES)
def test_okra_pixels_stay_exactly_and_the_surrounding_turns_green(mode: str) -> None:
    img, mask = white_scene()
    inside = mask > 0
    for seed in range(12):
        out = swap_background(img, mask, np.random.default_rng(seed), mode)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert np.array_equal(out[inside], img[inside])
        far = cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0  # beyond the feathered edge
        assert greenness(out[far]) > 5.0, (mode, seed)  # white and grey have greenness 0
        assert np.abs(out[far].astype(int) - img[far]).mean() > 20


def test_recolour_keeps_the_surroundings_structure() -> None:
    img, mask = white_scene()
    out = swap_background(img, mask, np.random.default_rng(1), "recolour").astype(np.float32)
    luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
    # the grey shadow band stays darker than the table, so its edge is still there
    assert luma[42:48, 5:15].mean() < luma[5:10, 40:70].mean() - 20


def test_the_edge_is_feathered_not_cut() -> None:
    img, mask = white_scene()
    out = swap_background(img, mask, np.random.default_rng(2), "replace")
    ring = (cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0) & (mask == 0)
    beyond = cv2.dilate(mask, np.ones((9, 9), np.uint8)) == 0
    pod = img[mask > 0].astype(np.float32).mean(axis=0)
    # pixels right outside the pod lean towards the pod's colour more than those farther away
    d_ring = np.abs(out[ring].astype(np.float32) - pod).sum(axis=1).mean()
    d_far = np.abs(out[beyond].astype(np.float32) - pod).sum(axis=1).mean()
    assert d_ring < d_far


def test_same_seed_same_result_and_negatives_untouched() -> None:
    img, mask = white_scene()
    a = swap_background(img, mask, np.random.default_rng(7))
    b = swap_background(img, mask, np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, swap_background(img, mask, np.random.default_rng(8)))
    empty = np.zeros_like(mask)
    assert swap_background(img, empty, np.random.default_rng(7)) is img


def test_refusals() -> None:
    img, mask = white_scene()
    with pytest.raises(ValueError, match="unknown background mode 'sky'"):
        swap_background(img, mask, np.random.default_rng(0), "sky")
    with pytest.raises(ValueError, match="do not match"):
        swap_background(img, mask[:, :10], np.random.default_rng(0))


def test_dataset_applies_it_to_training_images_with_okra_only(tmp_path: Path) -> None:
    img, mask = white_scene()
    write_image(tmp_path / "ds" / "images" / "pod.png", img)
    write_mask(tmp_path / "ds" / "masks" / "pod.png", mask)
    write_image(tmp_path / "ds" / "images" / "empty.png", img)
    write_mask(tmp_path / "ds" / "masks" / "empty.png", np.zeros_like(mask))
    none = {"hflip": 0, "vflip": 0, "rotation": 0, "scale": [1.0, 1.0], "color_jitter": 0, "blur": 0}
    none |= {"noise": 0, "jpeg": 0}
    kw = {"size_wh": (80, 60), "mean": (0.0,) * 3, "std": (1.0,) * 3, "raw_canvas": (80, 60)}
    on = OkraSegmentationDataset(
        tmp_path / "ds", ["pod", "empty"], train=True, augment=AugmentConfig(**none, background=1.0), **kw
    )
    off = OkraSegmentationDataset(
        tmp_path / "ds", ["pod", "empty"], train=True, augment=AugmentConfig(**none), **kw
    )
    evaluation = OkraSegmentationDataset(
        tmp_path / "ds", ["pod"], train=False, augment=AugmentConfig(**none, background=1.0), **kw
    )
    torch.manual_seed(0)
    swapped = on[0]["image"].permute(1, 2, 0).numpy()
    inside = mask > 0
    assert np.array_equal(swapped[inside], img[inside])
    assert greenness(swapped[cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0]) > 5.0
    assert np.array_equal(off[0]["image"].permute(1, 2, 0).numpy(), img)
    assert np.array_equal(on[1]["image"].permute(1, 2, 0).numpy(), img)  # no okra: nothing to set apart
    assert np.array_equal(evaluation[0]["image"].permute(1, 2, 0).numpy(), img)  # never at evaluation
    assert torch.equal(on[0]["mask"], off[0]["mask"])


def test_config_key_parses_and_defaults_off(tmp_path: Path) -> None:
    assert AugmentConfig().background == 0.0
    (tmp_path / "c.yaml").write_text("augment:\n  background: 0.3\n")
    assert AugmentConfig(**make_config(tmp_path / "c.yaml").augment).background == 0.3


def test_loader_path_keeps_okra_and_clears_the_teachers_soft_map_outside_it(tmp_path: Path) -> None:
    """The per-image pipeline (``augment_on: loader``, the default recipe's) with identity geometry."""
    img, mask = white_scene()
    write_image(tmp_path / "ds" / "images" / "pod.png", img)
    write_mask(tmp_path / "ds" / "masks" / "pod.png", mask)
    write_soft(tmp_path / "ds" / "soft" / "pod.png", np.full(mask.shape, 0.6, np.float32))
    none = {"hflip": 0, "vflip": 0, "rotation": 0, "scale": [1.0, 1.0], "color_jitter": 0, "blur": 0}
    none |= {"noise": 0, "jpeg": 0}
    kw = {"size_wh": (80, 60), "mean": (0.0,) * 3, "std": (1.0,) * 3, "train": True}
    on = OkraSegmentationDataset(
        tmp_path / "ds", ["pod"], augment=AugmentConfig(**none, background=1.0), **kw
    )
    off = OkraSegmentationDataset(tmp_path / "ds", ["pod"], augment=AugmentConfig(**none), **kw)
    inside = mask > 0
    item, plain = on[0], off[0]
    swapped = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    unswapped = (plain["image"].permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert np.abs(unswapped - img).max() <= 1  # the identity pipeline: only the swap changes pixels
    assert np.abs(swapped[inside].astype(int) - img[inside]).max() <= 1
    assert greenness(swapped[cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0]) > 5.0
    assert (
        torch.equal(item["mask"], plain["mask"])
        and item["mask"][0].numpy().astype(bool).sum() == inside.sum()
    )
    soft = item["soft"][0].numpy()
    assert np.allclose(soft[inside], 0.6, atol=0.01) and soft[~inside].max() == 0.0
    assert np.allclose(plain["soft"][0].numpy(), 0.6, atol=0.01)  # no swap: the teacher's map as it was
