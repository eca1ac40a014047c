"""The ``augment.zoom_out`` step: the picture shrunk, the frame filled by its mirror image, the
mask following every pixel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from okrainsight.imageio import write_image, write_mask
from okrainsight.torchdata import AugmentConfig, OkraSegmentationDataset
from okrainsight.training import make_config
from okrainsight.zoom_out import zoom_out


def pod_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An 80x60 grey table with one green pod (an ellipse) in its middle; mask 0/255, soft 0..1."""
    img = np.full((60, 80, 3), 200, np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    cv2.ellipse(mask, (40, 30), (24, 7), 20.0, 0, 360, 255, -1)
    img[mask > 0] = (70, 150, 50)
    soft = (mask > 0).astype(np.float32) * 0.8
    return img, mask, soft


def test_pods_shrink_and_the_mask_follows_the_pixels() -> None:
    img, mask, soft = pod_scene()
    for seed in range(8):
        out, m, s = zoom_out(img, mask, soft, 0.5, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert m.shape == mask.shape and set(np.unique(m)) <= {0, 255}
        assert s.dtype == np.float32 and s.min() >= 0.0 and s.max() <= 0.8 + 1e-6
        green = (out[..., 1].astype(int) - out[..., 0]) > 50  # the pod's pixels, wherever they went
        assert (green == (m > 0)).mean() > 0.97
        # one pod a quarter of the area, plus mirrored pieces of it: never the whole original area
        count, labels = cv2.connectedComponents(m)
        areas = np.bincount(labels.ravel())[1:]
        assert areas.max() <= 0.3 * (mask > 0).sum()
        # the soft map is resized bilinearly: exact inside the pod and far from it, blended at its rim
        kernel = np.ones((3, 3), np.uint8)
        assert np.allclose(s[cv2.erode(m, np.ones((5, 5), np.uint8)) > 0], 0.8, atol=0.01)
        assert (s[cv2.dilate(m, kernel) == 0] == 0).all()


def test_factor_one_is_the_identity_and_bad_input_is_refused() -> None:
    img, mask, soft = pod_scene()
    same = zoom_out(img, mask, soft, 1.0, np.random.default_rng(0))
    assert same[0] is img and same[1] is mask and same[2] is soft
    with pytest.raises(ValueError, match="0.5..1"):
        zoom_out(img, mask, soft, 0.3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="do not match"):
        zoom_out(img, mask[:, :10], soft, 0.7, np.random.default_rng(0))


def test_the_offset_is_random_and_repeats_with_its_seed() -> None:
    img, mask, soft = pod_scene()
    a = zoom_out(img, mask, soft, 0.6, np.random.default_rng(3))[1]
    b = zoom_out(img, mask, soft, 0.6, np.random.default_rng(3))[1]
    assert np.array_equal(a, b)
    others = [zoom_out(img, mask, soft, 0.6, np.random.default_rng(s))[1] for s in range(4, 10)]
    assert any(not np.array_equal(a, o) for o in others)


def test_dataset_zooms_out_training_images_only(tmp_path: Path) -> None:
    img, mask, _ = pod_scene()
    write_image(tmp_path / "ds" / "images" / "pod.png", img)
    write_mask(tmp_path / "ds" / "masks" / "pod.png", mask)
    none = {"hflip": 0, "vflip": 0, "rotation": 0, "scale": [1.0, 1.0], "color_jitter": 0, "blur": 0}
    none |= {"noise": 0, "jpeg": 0}
    kw = {"size_wh": (80, 60), "mean": (0.0,) * 3, "std": (1.0,) * 3, "raw_canvas": (80, 60)}
    zoomed = AugmentConfig(**none, zoom_out=1.0, zoom_out_scale=(0.5, 0.6))
    on = OkraSegmentationDataset(tmp_path / "ds", ["pod"], train=True, augment=zoomed, **kw)
    evaluation = OkraSegmentationDataset(tmp_path / "ds", ["pod"], train=False, augment=zoomed, **kw)
    torch.manual_seed(0)
    item = on[0]
    pod = item["mask"][0].numpy() > 0
    assert pod.sum() < 0.5 * (mask > 0).sum() or cv2.connectedComponents(pod.astype(np.uint8))[0] > 2
    assert not np.array_equal(item["image"].permute(1, 2, 0).numpy(), img)
    assert np.array_equal(evaluation[0]["image"].permute(1, 2, 0).numpy(), img)  # never at evaluation


def test_config_keys_parse_and_default_off(tmp_path: Path) -> None:
    assert AugmentConfig().zoom_out == 0.0
    (tmp_path / "c.yaml").write_text("augment:\n  zoom_out: 0.3\n  zoom_out_scale: [0.5, 0.8]\n")
    cfg = AugmentConfig(**make_config(tmp_path / "c.yaml").augment)
    assert cfg.zoom_out == 0.3 and tuple(cfg.zoom_out_scale) == (0.5, 0.8)
