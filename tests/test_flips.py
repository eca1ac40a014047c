"""Flip averaging (``okrainsight.flips``) and its use by the runtime, the card and ``okra segment``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _tiny_models import green_detector_dir
from okrainsight.checkpoint import CARD_FILE, ModelCard, load_card, save_card
from okrainsight.cli import main
from okrainsight.errors import ConfigError, ModelError
from okrainsight.flips import FLIPS, check_flips, flip, flip_averaged, parse_flips
from okrainsight.runtime import Segmenter

MODEL_SIZE = (64, 48)


def _lopsided(image: np.ndarray) -> np.ndarray:
    """A predictor that is not symmetric: greenness weighted by a ramp over rows and columns."""
    h, w = image.shape[:2]
    ramp = np.add.outer(np.linspace(0.0, 0.3, h), np.linspace(0.0, 0.7, w))
    return (image[..., 1].astype(np.float32) / 255.0 * ramp).astype(np.float32)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_each_flip_mirrors_and_undoes_itself(image: np.ndarray) -> None:
    assert np.array_equal(flip(image, "h"), image[:, ::-1])
    assert np.array_equal(flip(image, "v"), image[::-1])
    assert np.array_equal(flip(image, "hv"), image[::-1, ::-1])
    for name in FLIPS:
        assert np.array_equal(flip(flip(image, name), name), image)
    with pytest.raises(ValueError, match="unknown flip"):
        flip(image, "r90")


def test_averaging_over_all_flips_is_exactly_equivariant(image: np.ndarray) -> None:
    plain = _lopsided(image)
    assert not np.allclose(flip(_lopsided(flip(image, "h")), "h"), plain)  # the predictor is lopsided
    averaged = flip_averaged(image, _lopsided, FLIPS)
    for name in FLIPS:
        again = flip_averaged(np.ascontiguousarray(flip(image, name)), _lopsided, FLIPS)
        np.testing.assert_allclose(again, flip(averaged, name), atol=1e-6)


def test_averaging_is_the_mean_of_the_predictions_mapped_back(image: np.ndarray) -> None:
    assert np.array_equal(flip_averaged(image, _lopsided, ()), _lopsided(image))
    expected = (_lopsided(image) + _lopsided(image[:, ::-1])[:, ::-1]) / 2
    got = flip_averaged(image, _lopsided, ["h"])
    assert got.dtype == np.float32 and got.shape == image.shape[:2]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    flat = np.full((6, 10, 3), 200, np.uint8)  # on a uniform image, "h" leaves a column ramp symmetric
    sym = flip_averaged(flat, _lopsided, ["h"])
    np.testing.assert_allclose(sym, sym[:, ::-1], atol=1e-6)
    assert not np.allclose(_lopsided(flat), _lopsided(flat)[:, ::-1])


def test_predict_runs_once_per_flip_on_contiguous_copies(image: np.ndarray) -> None:
    seen: list[bool] = []

    def predict(x: np.ndarray) -> np.ndarray:
        seen.append(x.flags["C_CONTIGUOUS"])
        return _lopsided(x)

    flip_averaged(image, predict, ["h", "v", "hv", "h"])  # a repeated name counts once
    assert seen == [True] * 4


def test_flip_names_are_checked_and_parsed() -> None:
    assert check_flips(["v", "h", "v"]) == ("v", "h")
    assert check_flips([]) == ()
    assert parse_flips("h, hv") == ("h", "hv")
    assert parse_flips("none") == () and parse_flips("") == ()
    with pytest.raises(ValueError, match="unknown flip 'x'"):
        parse_flips("h,x")
    with pytest.raises(ValueError, match="list of names"):
        check_flips("hv")


def test_the_card_carries_flips_and_refuses_bad_ones(tmp_path: Path) -> None:
    card = ModelCard(arch="any", flips=("h", "v", "hv"))
    assert card.to_dict()["flips"] == ["h", "v", "hv"]
    assert ModelCard.from_dict(card.to_dict()) == card
    assert ModelCard.from_dict({"arch": "any"}).flips == ()  # cards written before flips existed
    for bad, problem in ((["h", "x"], "unknown flip 'x'"), ("h", "must be a list")):
        (tmp_path / CARD_FILE).write_text(json.dumps(card.to_dict() | {"flips": bad}))
        with pytest.raises(ModelError) as info:
            load_card(tmp_path)
        assert str(tmp_path / CARD_FILE) in str(info.value) and problem in str(info.value)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return green_detector_dir(tmp_path_factory.mktemp("green"), arch="_test_green_flips", size=MODEL_SIZE)


def test_segmenter_averages_the_cards_flips_or_its_own(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seg = Segmenter.from_path(model_dir, threads=1)
    assert seg.flips == () and seg.summary()["flips"] == []  # the card names none
    photo = np.full((48, 64, 3), 200, np.uint8)
    monkeypatch.setattr(seg, "_run", _lopsided)  # a network that is not symmetric
    plain = seg.predict_probability(photo)
    assert plain[:, -1].mean() > plain[:, 0].mean() + 0.2
    seg.flips = ("h",)
    mirrored = seg.predict_probability(photo)
    np.testing.assert_allclose(mirrored, mirrored[:, ::-1], atol=1e-5)
    assert seg.summary()["flips"] == ["h"]
    with pytest.raises(ConfigError, match="unknown flip"):
        seg.flips = ("sideways",)
    with pytest.raises(ConfigError, match="list of names"):
        seg.flips = "hv"  # not the letters h and v
    assert Segmenter.from_path(model_dir, flips=("v", "hv")).flips == ("v", "hv")


def test_segmenter_follows_the_cards_flips_unless_told_otherwise(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    folder = tmp_path / "flipped"
    shutil.copytree(model_dir, folder)
    card = load_card(folder)
    card.flips = ("h",)
    save_card(folder, card)
    seg = Segmenter.from_path(folder, threads=1)
    assert seg.flips == ("h",) and seg.summary()["flips"] == ["h"]
    monkeypatch.setattr(seg, "_run", _lopsided)
    photo = np.full((48, 64, 3), 200, np.uint8)
    by_card = seg.predict_probability(photo)
    np.testing.assert_allclose(by_card, by_card[:, ::-1], atol=1e-5)
    once = seg.predict_probability(photo, flips=())  # this call only
    assert once[:, -1].mean() > once[:, 0].mean() + 0.2
    assert seg.flips == ("h",)
    seg.flips = ()
    np.testing.assert_allclose(seg.predict_probability(photo), once)
    seg.flips = None  # back to the card's
    np.testing.assert_allclose(seg.predict_probability(photo), by_card)


def test_okra_segment_takes_flips(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    photo = tmp_path / "photo.png"
    img = np.full((60, 80, 3), (235, 232, 228), np.uint8)
    img[20:40, 10:70] = (60, 170, 50)
    Image.fromarray(img).save(photo)
    out = tmp_path / "out"
    args = ["segment", str(photo), "--out", str(out), "--model", str(model_dir), "--no-progress"]
    args += ["--threads", "1", "--grader", "none"]

    def run(*extra: str) -> int | None:
        with pytest.raises(SystemExit) as exc:
            main([*args, *extra])
        return exc.value.code

    assert run("--flips", "h,v,hv") in (0, None)
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["flips"] == ["h", "v", "hv"]
    assert results["images"][0]["okra_found"]
    assert run("--flips", "none") in (0, None)
    assert json.loads((out / "results.json").read_text())["model"]["flips"] == []
    assert run("--flips", "h,q") == 2
    err = capsys.readouterr().err
    assert "--flips" in err and "unknown flip 'q'" in err
