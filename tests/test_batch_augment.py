"""Augmentation of whole batches on the training device (okrainsight.batch_augment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from okrainsight.batch_augment import augment_batch, photometric, rank_seed, sampling_grid
from okrainsight.imageio import write_image, write_mask
from okrainsight.torchdata import AugmentConfig, OkraSegmentationDataset

GEOMETRY_ONLY = AugmentConfig(color_jitter=0, hue=0, blur=0, noise=0, jpeg=0, rotation=40, scale=(0.3, 1.0))


def blobs(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """``(n, 1, h, w)`` uint8 masks of a few random ellipses each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((n, 1, h, w), np.uint8)
    for i in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(4, h / 3), rng.uniform(4, w / 3)
            out[i, 0] |= (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1).astype(np.uint8)
    return torch.from_numpy(out)


def test_geometry_moves_mask_soft_and_image_together() -> None:
    mask = blobs(12, 72, 96, seed=1)
    image = (mask * 255).repeat(1, 3, 1, 1)  # the image is the mask: white blobs on black
    soft = mask * 255
    gen = torch.Generator().manual_seed(0)
    x, m, s = augment_batch(image, mask, soft, (48, 64), GEOMETRY_ONLY, (0.0,) * 3, (1.0,) * 3, gen)
    assert x.shape == (12, 3, 48, 64) and m.shape == s.shape == (12, 1, 48, 64)
    assert x.dtype == m.dtype == s.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0} and s.min() >= 0 and s.max() <= 1
    for i in range(12):
        img_fg, hard, prob = x[i, 0] > 0.5, m[i, 0] > 0.5, s[i, 0] > 0.5
        union = (img_fg | hard).sum()
        if union > 20:
            assert (img_fg & hard).sum() / union > 0.9
            assert (prob & hard).sum() / (prob | hard).sum() > 0.9
    # rotations, crops and flips differ from image to image and from draw to draw
    again = augment_batch(image, mask, soft, (48, 64), GEOMETRY_ONLY, (0.0,) * 3, (1.0,) * 3, gen)[1]
    assert not torch.equal(m, again)


def test_the_same_generator_seed_draws_the_same_batch() -> None:
    mask = blobs(4, 40, 40, seed=2)
    image = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    cfg = AugmentConfig()

    def draw(seed: int) -> torch.Tensor:
        return augment_batch(
            image, mask, mask, (32, 32), cfg, (0.5,) * 3, (0.25,) * 3, torch.Generator().manual_seed(seed)
        )[0]

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_full_crop_without_turns_or_flips_is_a_resize() -> None:
    # scale (1, 1), no rotation or flips: the grid covers the whole photo, pixel centres included
    cfg = AugmentConfig(hflip=0, vflip=0, rotation=0, scale=(1.0, 1.0))
    grid = sampling_grid(3, (30, 30), (30, 30), cfg, torch.Generator().manual_seed(0))
    # a square photo: the 3:4-4:3 aspect draw crops one side, never beyond the photo
    assert grid.abs().max() <= 1.0 + 1e-6
    assert (grid[..., 0].amax((1, 2)) - grid[..., 0].amin((1, 2)) > 1.2).all()
    flips = AugmentConfig(hflip=1.0, vflip=0, rotation=0, scale=(1.0, 1.0))
    plain = sampling_grid(2, (20, 40), (20, 40), cfg, torch.Generator().manual_seed(3))
    mirrored = sampling_grid(2, (20, 40), (20, 40), flips, torch.Generator().manual_seed(3))
    assert torch.allclose(mirrored, plain.flip(2), atol=1e-5)  # the same crop, read right to left
    assert plain.abs().max() <= 1.0 + 1e-6  # a 2:1 photo too: never beyond its edges without rotation


def test_rotations_keep_right_angles_in_pixels_on_a_wide_photo() -> None:
    # output axes, mapped into the photo's pixels (x * W / 2, y * H / 2), stay perpendicular and
    # keep the crop's aspect: a width/height mix-up in the normalisation would shear them
    H, W, h, w = 288, 384, 200, 256
    cfg = AugmentConfig(hflip=0, vflip=0, rotation=40, scale=(0.3, 0.9))
    grid = sampling_grid(16, (H, W), (h, w), cfg, torch.Generator().manual_seed(4)).double()
    px = grid * torch.tensor([W / 2, H / 2], dtype=torch.float64)
    along_x = px[:, 0, -1] - px[:, 0, 0]  # one output row, left to right
    along_y = px[:, -1, 0] - px[:, 0, 0]  # one output column, top to bottom
    cos = (along_x * along_y).sum(-1) / (along_x.norm(dim=-1) * along_y.norm(dim=-1))
    assert cos.abs().max() < 1e-4
    turned = torch.atan2(along_x[:, 1], along_x[:, 0]).abs() > 0.05
    assert 2 <= int(turned.sum()) <= 14  # about half of them rotated


def test_each_ddp_rank_gets_its_own_repeatable_stream() -> None:
    seeds = [rank_seed(0, r) for r in range(8)] + [rank_seed(1, r) for r in range(8)]
    assert len(set(seeds)) == 16 and rank_seed(3, 2) == rank_seed(3, 2)
    mask = blobs(4, 40, 40, seed=3)
    image = (mask * 255).repeat(1, 3, 1, 1)

    def draw(rank: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(rank_seed(0, rank))
        return augment_batch(image, mask, mask, (32, 32), GEOMETRY_ONLY, (0.0,) * 3, (1.0,) * 3, gen)[1]

    assert not torch.equal(draw(0), draw(1)) and torch.equal(draw(1), draw(1))


def test_photometry_keeps_range_and_leaves_grey_grey_without_jitter() -> None:
    grey = torch.full((6, 3, 16, 16), 0.4)
    out = photometric(
        grey, AugmentConfig(color_jitter=0, hue=0, blur=0.9, noise=0), torch.Generator().manual_seed(0)
    )
    assert torch.allclose(out, grey, atol=1e-5)  # a blur of a flat image changes nothing
    rgb0 = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    hue_only = AugmentConfig(color_jitter=0, hue=0.2, blur=0, noise=0)  # as the loader: no jitter, no hue
    assert torch.equal(photometric(rgb0, hue_only, torch.Generator().manual_seed(0)), rgb0)
    rgb = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    jittered = photometric(
        rgb, AugmentConfig(color_jitter=0.4, hue=0.1, blur=0.5, noise=0.05), torch.Generator().manual_seed(2)
    )
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, rgb)


def test_dataset_raw_items_are_canvas_sized_uint8(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_image(tmp_path / "ds" / "images" / "a.png", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    write_mask(tmp_path / "ds" / "masks" / "a.png", (rng.random((30, 40)) > 0.5).astype(np.uint8) * 255)
    write_image(tmp_path / "neg" / "b.png", np.full((50, 20, 3), 90, np.uint8))
    ds = OkraSegmentationDataset(
        tmp_path / "ds", "all", (16, 16), (0.0,) * 3, (1.0,) * 3, train=True, negatives=[tmp_path / "neg"],
        augment=AugmentConfig(jpeg=0), raw_canvas=(40, 30),
    )  # fmt: skip
    for item in (ds[0], ds[1]):
        assert item["image"].dtype == item["mask"].dtype == item["soft"].dtype == torch.uint8
        assert item["image"].shape == (3, 30, 40) and item["mask"].shape == item["soft"].shape == (1, 30, 40)
    assert ds[1]["mask"].sum() == 0 and set(ds[0]["mask"].unique().tolist()) == {0, 1}
    assert torch.equal(ds[0]["soft"], ds[0]["mask"] * 255)  # no soft map: the hard mask
    # jpeg=1: every raw image is re-encoded (at a random quality), the masks are untouched
    lossy = OkraSegmentationDataset(
        tmp_path / "ds", "all", (16, 16), (0.0,) * 3, (1.0,) * 3, train=True,
        augment=AugmentConfig(jpeg=1.0, jpeg_quality=(30, 40)), raw_canvas=(40, 30),
    )  # fmt: skip
    item = lossy[0]
    assert item["image"].shape == (3, 30, 40) and not torch.equal(item["image"], ds[0]["image"])
    assert torch.equal(item["mask"], ds[0]["mask"])


@pytest.mark.parametrize("bad", ["gpu", ""])
def test_config_refuses_unknown_augment_place(bad: str) -> None:
    from okrainsight.errors import ConfigError
    from okrainsight.training import make_config

    with pytest.raises(ConfigError, match="augment_on"):
        make_config(None, {"augment_on": bad})
