"""Hysteresis masks (okrainsight.hysteresis) and the card's seed threshold."""

from __future__ import annotations

import numpy as np
import pytest

from okrainsight.checkpoint import ModelCard
from okrainsight.errors import ModelError
from okrainsight.hysteresis import check_seed_threshold, okra_mask


def _two_blobs() -> np.ndarray:
    """A confident blob (core 0.95, rim 0.4) on the left and a weak one (0.6 everywhere) on the right."""
    p = np.zeros((20, 40), np.float32)
    p[4:16, 2:14] = 0.4
    p[7:13, 5:11] = 0.95
    p[4:16, 24:36] = 0.6
    return p


def test_without_seeds_it_is_a_plain_threshold() -> None:
    p = _two_blobs()
    assert np.array_equal(okra_mask(p, 0.5), p >= 0.5)
    assert np.array_equal(okra_mask(p, 0.5, 0.5), p >= 0.5)  # a seed at the threshold changes nothing
    assert np.array_equal(okra_mask(p, 0.5, 0.3), p >= 0.5)


def test_regions_without_a_confident_core_are_dropped_and_cores_grow_down_to_the_threshold() -> None:
    p = _two_blobs()
    m = okra_mask(p, 0.35, 0.9)
    assert m.dtype == bool and m.shape == p.shape
    assert m[4:16, 2:14].all()  # the whole left blob, rim included (0.4 >= 0.35)
    assert not m[:, 20:].any()  # the weak right blob has no pixel >= 0.9
    assert m.sum() == 12 * 12
    # with a seed threshold the weak blob reaches, both are kept
    assert np.array_equal(okra_mask(p, 0.35, 0.55), p >= 0.35)


def test_regions_connect_diagonally() -> None:
    p = np.zeros((6, 6), np.float32)
    p[1, 1] = 0.99
    p[2, 2] = 0.6  # touches the seed only at a corner
    p[4, 4] = 0.6  # alone
    m = okra_mask(p, 0.5, 0.9)
    assert m[1, 1] and m[2, 2] and not m[4, 4]


def test_empty_and_all_okra_maps() -> None:
    assert not okra_mask(np.zeros((5, 7), np.float32), 0.5, 0.8).any()
    assert okra_mask(np.ones((5, 7), np.float32), 0.5, 0.8).all()


def test_seed_threshold_must_lie_between_threshold_and_one() -> None:
    assert check_seed_threshold(0.4, None) is None
    assert check_seed_threshold(0.4, "0.8") == pytest.approx(0.8)
    for bad in (0.4, 0.3, 1.0, 1.5):
        with pytest.raises(ValueError, match="seed_threshold"):
            check_seed_threshold(0.4, bad)


def test_card_carries_the_seed_threshold() -> None:
    card = ModelCard(arch="x", threshold=0.4, seed_threshold=0.85)
    again = ModelCard.from_dict(card.to_dict())
    assert again.seed_threshold == pytest.approx(0.85) and again.threshold == pytest.approx(0.4)
    assert ModelCard.from_dict({"arch": "x"}).seed_threshold is None  # older cards: plain threshold
    with pytest.raises(ModelError, match=r"m/card.json: invalid card field \(seed_threshold"):
        ModelCard.from_dict({"arch": "x", "threshold": 0.5, "seed_threshold": 0.3}, source="m/card.json")
    with pytest.raises(ModelError, match="m/card.json"):
        ModelCard.from_dict({"arch": "x", "seed_threshold": "high"}, source="m/card.json")
