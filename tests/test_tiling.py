"""Tiled inference (okrainsight.tiling): tiles keep the input's aspect ratio, cover the photo,
overlap, and blend back into place."""

from __future__ import annotations

import numpy as np
import pytest

from okrainsight.tiling import (
    MAX_TILES,
    MIN_TILE_SIDE,
    check_zooms,
    parse_zooms,
    tile_starts,
    tile_windows,
    tiled_probability,
)


@pytest.mark.parametrize(
    ("length", "side", "overlap"), [(100, 100, 0.25), (400, 288, 0.25), (1000, 97, 0.5), (50, 7, 0.0)]
)
def test_tile_starts_cover_the_length_with_the_overlap_asked_for(length, side, overlap):
    starts = tile_starts(length, side, overlap)
    assert starts[0] == 0 and starts[-1] + side == length
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + side] = True
    assert covered.all()
    gaps = np.diff(starts)
    assert (gaps > 0).all() and (gaps <= side * (1 - overlap) + 1).all()


def test_tile_windows_keep_the_aspect_ratio_and_zoom_shrinks_them():
    assert tile_windows(300, 500, 0) == [(0, 0, 300, 500)]
    one = tile_windows(300, 500, 1)
    assert {(th, tw) for _, _, th, tw in one} == {(300, 300)} and len(one) == 2
    two = tile_windows(300, 500, 2)
    assert {(th, tw) for _, _, th, tw in two} == {(150, 150)}
    assert len(two) > 2 * len(one)
    # a 4:3 network input on a tall photo: 4:3 tiles as wide as the photo
    wide = tile_windows(900, 400, 1, aspect=4 / 3)
    assert {(th, tw) for _, _, th, tw in wide} == {(300, 400)} and len(wide) >= 3
    tiny = tile_windows(3, 2, 4)
    assert all(th >= 1 and tw >= 1 for _, _, th, tw in tiny)


def _position_predictor(seen: list[tuple[int, int]]):
    """A 'network' whose probability is the crop's own red channel / 255, and which records
    the shape of every crop it is given."""

    def predict(crop: np.ndarray) -> np.ndarray:
        seen.append(crop.shape[:2])
        return crop[..., 0].astype(np.float32) / 255.0

    return predict


@pytest.mark.parametrize("zooms", [(0,), (1,), (2,), (1, 2), (1, 1.5, 3)])
def test_tiles_blend_back_into_place(zooms):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (123, 301, 3), dtype=np.uint8)
    seen: list[tuple[int, int]] = []
    prob = tiled_probability(image, _position_predictor(seen), zooms)
    assert prob.shape == (123, 301) and prob.dtype == np.float32
    # every tile agrees with every other where they overlap, so blending must give back the photo:
    # a tile put in the wrong place, or weights that do not sum to one, would show here
    np.testing.assert_allclose(prob, image[..., 0] / 255.0, atol=1e-5)
    if 0 not in zooms:
        assert all(h == w for h, w in seen), seen  # square tiles: nothing is squeezed


def test_overlapping_tiles_that_disagree_are_cross_faded_without_a_step():
    image = np.zeros((100, 160, 3), np.uint8)
    assert [x for _, x, _, _ in tile_windows(100, 160, 1)] == [0, 60]
    calls = iter([0.0, 1.0])  # the left tile says 0, the right one 1

    def predict(crop: np.ndarray) -> np.ndarray:
        return np.full(crop.shape[:2], next(calls), np.float32)

    prob = tiled_probability(image, predict, (1,))
    row = prob[50]
    assert row[:60].max() == pytest.approx(0.0, abs=1e-3) and row[100:].min() == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(row) >= -1e-6)  # rises monotonically through the overlap
    assert np.abs(np.diff(row)).max() < 0.1  # no seam: no jump between neighbouring columns


@pytest.mark.parametrize(("text", "expected"), [("1,2", (1.0, 2.0)), (" 0 ", (0.0,)), ("1.5", (1.5,))])
def test_parse_zooms(text, expected):
    assert parse_zooms(text) == expected


@pytest.mark.parametrize(
    ("zooms", "problem"), [((), "at least one"), ((0.5,), "0.5"), ((-1,), "-1"), ((float("inf"),), "inf")]
)
def test_bad_zooms_are_refused_with_the_reason(zooms, problem):
    with pytest.raises(ValueError, match=problem):
        check_zooms(zooms)
    with pytest.raises(ValueError, match="comma-separated"):
        parse_zooms("one,two")


@pytest.mark.parametrize(
    ("height", "width", "zoom"),
    [(10, 100_000, 1), (10, 100_000, 2), (16, 8000, 2), (1, 1000, 1), (3000, 4000, 8)],
)
def test_no_photo_costs_more_than_max_tiles_per_zoom(height, width, zoom):
    windows = tile_windows(height, width, zoom)
    assert 1 <= len(windows) <= MAX_TILES
    covered = np.zeros((height, width), bool)
    for y, x, th, tw in windows:
        assert min(th, height) >= min(height, MIN_TILE_SIDE) or th == height
        assert y >= 0 and y + th <= height and x >= 0 and x + tw <= width
        covered[y : y + th, x : x + tw] = True
    assert covered.all()


def test_a_nearly_square_photo_is_one_tile_and_zooms_are_deduplicated():
    assert tile_windows(256, 260, 1) == [(0, 0, 256, 260)]  # 2% wider: squeezed, not cut in two
    assert len(tile_windows(256, 300, 1)) == 2
    assert check_zooms((1, 2, 1.0, 2)) == (1.0, 2.0)
    with pytest.raises(ValueError, match="1 to 8"):
        check_zooms((1000,))
