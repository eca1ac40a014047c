"""The torch-free runtime: model resolution, full-resolution probability, pods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from _tiny_models import green_detector_dir
from okrainsight import runtime
from okrainsight.checkpoint import ModelCard, save_card
from okrainsight.errors import ConfigError, ModelError
from okrainsight.runtime import Segmenter, find_pods, okra_found, okra_fraction, pod_length

MODEL_SIZE = (64, 48)  # (width, height) the network runs at
POD_RGB = (60, 170, 50)
BACKGROUND_RGB = (235, 232, 228)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder whose network calls saturated green 'okra' (logit = 30 * (G - (R + B) / 2 - 0.15))."""
    return green_detector_dir(tmp_path_factory.mktemp("green"), arch="_test_green_runtime", size=MODEL_SIZE)


def _photo(size=(256, 192), pods=(((80, 96), (50, 14), 10), ((190, 100), (45, 12), -30))) -> np.ndarray:
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    for centre, axes, angle in pods:
        cv2.ellipse(img, centre, axes, angle, 0, 360, POD_RGB, -1, lineType=cv2.LINE_AA)
    return img


def test_probability_is_upsampled_to_full_resolution(model_dir):
    seg = Segmenter.from_path(model_dir, threads=1)
    assert seg.input_size == MODEL_SIZE and seg.threads == 1
    img = _photo()
    result = seg.segment(img)
    assert result.probability.shape == (192, 256) and result.probability.dtype == np.float32
    assert result.mask.shape == (192, 256) and result.mask.dtype == bool
    assert result.probability.min() >= 0.0 and result.probability.max() <= 1.0
    truth = np.zeros((192, 256), np.uint8)
    cv2.ellipse(truth, (80, 96), (50, 14), 10, 0, 360, 1, -1)
    cv2.ellipse(truth, (190, 100), (45, 12), -30, 0, 360, 1, -1)
    iou = (result.mask & (truth > 0)).sum() / (result.mask | (truth > 0)).sum()
    assert iou > 0.85
    # thresholded after upsampling: edges are not 4x4 blocks of a 64x48 mask
    blocks = result.mask.reshape(48, 4, 64, 4).transpose(0, 2, 1, 3).reshape(48, 64, 16)
    mixed = np.logical_and(blocks.any(-1), ~blocks.all(-1)).sum()
    assert mixed > 20
    assert result.okra_found and okra_found(result)
    assert result.okra_fraction == pytest.approx(okra_fraction(result.mask))
    assert 0.02 < result.okra_fraction < 0.2


def test_two_separated_pods_are_reported_one_by_one(model_dir):
    seg = Segmenter.from_path(model_dir, threads=1)
    result = seg.segment(_photo())
    assert len(result.pods) == 2
    left, right = sorted(result.pods, key=lambda p: p.centroid[0])
    assert left.bbox[0] < 40 and left.bbox[2] < 140 and right.bbox[0] > 130
    for pod, expected_len in ((left, 100), (right, 90)):
        assert abs(pod.length_px - expected_len) < 0.15 * expected_len
        assert pod.area_px > 500 and pod.tender_probability is None
        x0, y0, x1, y1 = pod.bbox
        assert pod.crop.shape == (y1 - y0, x1 - x0) and pod.crop.sum() == pod.area_px
        assert pod.contour.ndim == 2 and pod.contour.shape[1] == 2
        assert x0 <= pod.centroid[0] < x1 and y0 <= pod.centroid[1] < y1
        d = pod.to_dict()
        assert set(d) == {"area_px", "bbox", "length_px", "tender_probability"}
        json.dumps(d)


def test_no_okra_on_a_plain_background(model_dir):
    seg = Segmenter.from_path(model_dir, threads=1)
    result = seg.segment(_photo(pods=()))
    assert not result.mask.any() and result.pods == [] and not result.okra_found
    assert result.okra_fraction == 0.0


def test_threshold_override(model_dir):
    seg = Segmenter.from_path(model_dir, threads=1)
    img = _photo()
    low, high = seg.segment(img, threshold=0.05), seg.segment(img, threshold=0.95)
    assert low.mask.sum() > high.mask.sum() > 0
    with pytest.raises(ConfigError):
        seg.segment(img, threshold=1.5)
    with pytest.raises(ConfigError):
        seg.segment(img[:, :, 0])


def test_card_seed_threshold_drops_regions_without_a_confident_core(model_dir, tmp_path):
    """Hysteresis (okrainsight.hysteresis): a pale-green blob the detector gives about 0.6 is okra
    with a plain 0.5 threshold, and is dropped once the card asks for a 0.85 seed."""
    img = _photo(pods=(((80, 96), (50, 14), 10),))
    cv2.ellipse(img, (190, 100), (45, 12), -30, 0, 360, (190, 232, 190), -1)  # G - (R+B)/2 = 0.165
    plain = Segmenter.from_path(model_dir, threads=1).segment(img)
    assert plain.seed_threshold is None and len(plain.pods) == 2
    assert 0.5 < float(plain.probability[100, 190]) < 0.85

    seeded_dir = tmp_path / "seeded"
    seeded_dir.mkdir()
    (seeded_dir / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    card = json.loads((model_dir / "card.json").read_text())
    save_card(seeded_dir, ModelCard.from_dict({**card, "seed_threshold": 0.85}))
    seg = Segmenter.from_path(seeded_dir, threads=1)
    assert seg.seed_threshold == pytest.approx(0.85)
    assert seg.summary()["seed_threshold"] == pytest.approx(0.85)
    seeded = seg.segment(img)
    assert seeded.seed_threshold == pytest.approx(0.85)
    assert len(seeded.pods) == 1 and seeded.mask[96, 80] and not seeded.mask[100, 190]
    assert np.array_equal(seeded.mask[:, :140], plain.mask[:, :140])  # the confident pod is untouched
    # seed_threshold=0 (at or below the threshold) turns hysteresis off for one call
    off = seg.segment(img, seed_threshold=0)
    assert off.seed_threshold is None and np.array_equal(off.mask, plain.mask)
    assert seg.summary(threshold=0.9)["seed_threshold"] is None  # a threshold above the seed: plain
    with pytest.raises(ConfigError, match="seed threshold"):
        seg.segment(img, seed_threshold=1.2)


def test_zooms_keep_thin_detail_that_squeezing_the_photo_loses(model_dir):
    """A 3-px green stripe on a 4:1 photo: squeezed whole into the 64x48 input it blurs below the
    threshold; tiles at zoom 4 (about 85x64 px each, near the input's own size) keep it."""
    img = np.empty((256, 1024, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    img[20:236, 500:503] = POD_RGB
    truth = np.zeros((256, 1024), bool)
    truth[20:236, 500:503] = True
    seg = Segmenter.from_path(model_dir, threads=1)
    assert seg.zooms == (1.0,)  # the card names none
    assert seg.summary()["zooms"] == [1.0]
    seg.zooms = (0,)
    whole = seg.segment(img)
    assert not whole.mask.any()
    seg.zooms = (4,)
    fine = seg.segment(img)
    iou = (fine.mask & truth).sum() / (fine.mask | truth).sum()
    assert iou > 0.5, iou
    assert seg.summary()["zooms"] == [4.0]
    assert Segmenter.from_path(model_dir, zooms=(4,)).predict_probability(img).max() > 0.5
    p0 = seg.predict_probability(img, zooms=(0,))
    assert p0.shape == (256, 1024) and p0.max() < 0.5  # a per-call override, the setting unchanged
    assert seg.zooms == (4.0,)
    with pytest.raises(ConfigError, match="zoom"):
        seg.zooms = (0.5,)
    with pytest.raises(ConfigError, match="zoom"):
        Segmenter.from_path(model_dir, zooms=())


def test_touching_pods_split_single_pod_kept_whole():
    touching = np.zeros((200, 300), np.uint8)
    cv2.circle(touching, (100, 100), 30, 1, -1)
    cv2.circle(touching, (150, 100), 30, 1, -1)
    pods = find_pods(touching)
    assert len(pods) == 2
    assert abs(pods[0].area_px - pods[1].area_px) < 0.1 * pods[0].area_px
    a, b = (p.full_mask(touching.shape) for p in pods)
    assert not (a & b).any()  # disjoint
    assert abs(int((a | b).sum()) - int(touching.sum())) < 0.01 * touching.sum()  # cleanup moves few pixels

    single = np.zeros((200, 300), np.uint8)
    cv2.ellipse(single, (150, 100), (90, 16), 25, 0, 360, 1, -1)
    (pod,) = find_pods(single)
    assert abs(pod.length_px - 180) < 15

    assert len(find_pods(touching, split_touching=False)) == 1
    # two pods lying side by side along their whole length: no neck, so no guessing
    side = np.zeros((200, 300), np.uint8)
    cv2.ellipse(side, (150, 88), (90, 12), 0, 0, 360, 1, -1)
    cv2.ellipse(side, (150, 113), (90, 12), 0, 0, 360, 1, -1)
    assert len(find_pods(side)) == 1
    specks = np.zeros((200, 300), np.uint8)
    specks[10:13, 10:13] = 1
    assert find_pods(specks) == []


def test_pods_side_by_side_split_where_the_probability_has_a_valley():
    """No neck in the mask, but the network is less sure where the pods touch: cut there."""
    side = np.zeros((200, 300), np.uint8)
    cv2.ellipse(side, (150, 88), (90, 12), 0, 0, 360, 1, -1)
    cv2.ellipse(side, (150, 113), (90, 12), 0, 0, 360, 1, -1)
    rows = np.arange(200, dtype=np.float32)[:, None]
    valley = np.broadcast_to(0.95 - 0.35 * np.exp(-(((rows - 100.5) / 3.0) ** 2)), side.shape)
    assert len(find_pods(side, probability=np.full(side.shape, 0.95, np.float32))) == 1  # no valley
    pods = find_pods(side, probability=valley.astype(np.float32))
    assert len(pods) == 2
    top, bottom = sorted(pods, key=lambda p: p.centroid[1])
    assert top.centroid[1] < 95 < 106 < bottom.centroid[1]
    for pod in pods:
        assert abs(pod.length_px - 180) < 20  # each is a whole pod, not a piece
    a, b = (p.full_mask(side.shape) for p in pods)
    assert not (a & b).any() and abs(int((a | b).sum()) - int(side.sum())) < 0.01 * side.sum()
    assert len(find_pods(side, probability=valley.astype(np.float32), split_touching=False)) == 1
    # one pod whose probability dips across it (a shadow) is not cut into stubby pieces
    single = np.zeros((200, 300), np.uint8)
    cv2.ellipse(single, (150, 100), (60, 30), 0, 0, 360, 1, -1)
    cols = np.arange(300, dtype=np.float32)[None, :]
    shadow = np.broadcast_to(0.95 - 0.35 * np.exp(-(((cols - 150) / 3.0) ** 2)), single.shape)
    assert len(find_pods(single, probability=shadow.astype(np.float32))) == 1
    # nor along its length by a shallow ridge line or highlight, nor a disc (a pod seen cap-first)
    rows = np.arange(200, dtype=np.float32)[:, None]
    ridge = np.broadcast_to(0.95 - 0.1 * np.exp(-(((rows - 100) / 2.0) ** 2)), single.shape)
    lying = np.zeros((200, 300), np.uint8)
    cv2.ellipse(lying, (150, 100), (70, 20), 0, 0, 360, 1, -1)
    assert len(find_pods(lying, probability=ridge.astype(np.float32))) == 1
    disc = np.zeros((200, 300), np.uint8)
    cv2.circle(disc, (150, 100), 50, 1, -1)
    assert len(find_pods(disc, probability=shadow.astype(np.float32))) == 1


def test_segment_splits_pods_side_by_side_with_its_own_probability(model_dir):
    """Two green pods touching along their length, with a paler line between them (the network
    less sure there): one region in the mask, two pods from ``segment``."""
    img = np.empty((200, 300, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    cv2.ellipse(img, (150, 88), (90, 12), 0, 0, 360, POD_RGB, -1)
    cv2.ellipse(img, (150, 113), (90, 12), 0, 0, 360, POD_RGB, -1)
    img[99:102, 70:230][(img[99:102, 70:230] == POD_RGB).all(-1)] = (118, 160, 118)  # p about 0.55
    seg = Segmenter.from_path(model_dir, threads=1, zooms=(4,))
    result = seg.segment(img)
    assert len(find_pods(result.mask)) == 1  # the mask alone has no neck
    assert len(result.pods) == 2
    assert len(seg.segment(img, split_touching=False).pods) == 1


def test_curved_pod_length_follows_the_curve():
    arc = np.zeros((400, 400), np.uint8)
    cv2.ellipse(arc, (200, 200), (150, 150), 0, 180, 360, 1, 16)
    # a half circle of radius ~150: span 300 px, along the curve ~ 450-470 px
    assert 400 < pod_length(arc > 0) < 500


def test_model_resolution(model_dir, tmp_path, monkeypatch):
    # .onnx with its card beside it
    assert Segmenter.from_path(model_dir / "model.onnx").card.arch == "_test_green_runtime"
    # .onnx alone: the card embedded in its metadata is used
    alone = tmp_path / "alone" / "green.onnx"
    alone.parent.mkdir()
    alone.write_bytes((model_dir / "model.onnx").read_bytes())
    assert Segmenter.from_path(alone).card.input_size == MODEL_SIZE
    # a card beside it that describes another model is refused
    save_card(alone.parent, ModelCard(arch="something_else", input_size=(32, 32)))
    with pytest.raises(ModelError, match="another model"):
        Segmenter.from_path(alone)
    # built-in names come from the package's models/ folder
    builtin = tmp_path / "models"
    (builtin / "mini").mkdir(parents=True)
    (builtin / "mini" / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    save_card(builtin / "mini", ModelCard(arch="_test_green_runtime", input_size=MODEL_SIZE))
    monkeypatch.setattr(runtime, "BUILTIN_DIR", builtin)
    assert runtime.list_builtin_models() == ["mini"]
    assert Segmenter.from_path("mini").segment(_photo()).okra_found
    with pytest.raises(ModelError, match=r"no built-in model named 'nope'.*mini"):
        Segmenter.from_path("nope")
    info = runtime.describe_model("mini")
    assert info["arch"] == "_test_green_runtime" and info["files"]["model.onnx"] > 0
    # a folder with weights but no ONNX, and a non-ONNX file
    (tmp_path / "weights").mkdir()
    save_card(tmp_path / "weights", ModelCard(arch="x"))
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="export it to ONNX"):
        Segmenter.from_path(tmp_path / "weights")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        Segmenter.from_path(junk)


_NO_TORCH_SCRIPT = r"""
import json, sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np, cv2
from okrainsight.runtime import Segmenter
from okrainsight.segment import segment_inputs
from okrainsight.imageio import write_image
model, out = sys.argv[1], sys.argv[2]
img = np.full((120, 160, 3), 235, np.uint8)
cv2.ellipse(img, (80, 60), (50, 12), 15, 0, 360, (60, 170, 50), -1)
result = Segmenter.from_path(model, threads=1).segment(img)
write_image(out + "/photo.png", img)
res = segment_inputs([out + "/photo.png"], out + "/res", model, progress=False)
loaded = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
print(json.dumps({"pods": len(result.pods), "shape": list(result.probability.shape),
                  "batch_pods": len(res["images"][0]["pods"]),
                  "torch": [m for m in loaded if sys.modules[m]]}))
"""


def test_runtime_works_without_torch(model_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH_SCRIPT, str(model_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"pods": 1, "shape": [120, 160], "batch_pods": 1, "torch": []}


def test_pod_length_starts_well_from_a_diagonally_joined_first_pixel():
    """The first mask pixel (in raster order) touching the rest only at a corner must not stop the
    walk: the length is the bar's, not that pixel's."""
    m = np.zeros((40, 200), bool)
    m[11:20, 10:190] = True
    m[10, 9] = True  # joined to (11, 10) diagonally only
    assert 175 < pod_length(m) < 190
    big = np.zeros((400, 400), bool)  # the same after downscaling to 160 px
    big[101:140, 20:380] = True
    big[100, 19] = True
    assert 350 < pod_length(big) < 375
