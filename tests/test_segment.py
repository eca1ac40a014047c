"""``okra segment``: the output contract, per-input errors, video input, the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from _tiny_models import green_detector_dir
from okrainsight.imageio import read_image, read_mask, write_image
from okrainsight.segment import expand_inputs, failed_count, segment_inputs, unique_names
from okrainsight.synth import render_scene

MODEL_SIZE = (64, 48)
POD_RGB = (60, 170, 50)
BACKGROUND_RGB = (235, 232, 228)
IMAGE_KEYS = {"path", "mask", "width", "height", "okra_found", "okra_fraction", "pods", "error"}
POD_KEYS = {"area_px", "bbox", "length_px", "tender_probability"}
OKRA = Path(sys.executable).parent / "okra"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder whose network calls saturated green 'okra' (a hand-set 1x1 convolution)."""
    return green_detector_dir(tmp_path_factory.mktemp("model"), arch="_test_green_segment", size=MODEL_SIZE)


def _photo(w: int, h: int, pods: list[tuple[tuple[int, int], tuple[int, int], int]]) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND_RGB
    for centre, axes, angle in pods:
        cv2.ellipse(img, centre, axes, angle, 0, 360, POD_RGB, -1, lineType=cv2.LINE_AA)
    return img


TWO_PODS = [((60, 60), (40, 10), 15), ((150, 70), (35, 9), -40)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    (root / "a").mkdir()
    (root / "b").mkdir()
    write_image(root / "a" / "photo.jpg", _photo(200, 130, TWO_PODS), quality=95)
    write_image(root / "b" / "photo.png", _photo(120, 90, [((60, 45), (30, 8), 0)]))
    write_image(root / "empty.png", _photo(100, 80, []))
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    # stored 160x100 landscape, EXIF orientation 6: a person sees it 100 wide, 160 high
    Image.fromarray(_photo(160, 100, [((80, 50), (50, 12), 0)])).save(root / "rotated.jpg", exif=_exif(6))
    # a rendered scene as realistic content (contract only; the test model is a colour rule)
    write_image(root / "scene.png", render_scene(3, size=(128, 96), kind="white").image)
    writer = cv2.VideoWriter(str(root / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    assert writer.isOpened()
    for i in range(6):
        frame = _photo(96, 64, [((20 + 8 * i, 32), (16, 5), 10)])
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return root


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.fixture(scope="module")
def batch(model_dir, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    missing = inputs / "missing.jpg"
    results = segment_inputs([inputs, missing], out, model_dir, progress=False, threads=1)
    return out, results


def _entry(results, suffix):
    (hit,) = [e for e in results["images"] if e["path"].endswith(suffix)]
    return hit


def test_results_json_contract(batch):
    out, results = batch
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert set(results) == {"model", "images"}
    assert results["model"]["arch"] == "_test_green_segment"
    assert results["model"]["input_size"] == list(MODEL_SIZE)
    assert results["model"]["threshold"] == 0.5
    assert results["model"]["zooms"] == [1.0]  # the card names none: aspect-kept tiles, one zoom
    assert len(results["images"]) == 8  # 6 images + 1 video + 1 missing
    for e in results["images"]:
        assert set(e) >= IMAGE_KEYS
        if "video" not in e:
            assert set(e) == IMAGE_KEYS
        for pod in e["pods"]:
            assert set(pod) == POD_KEYS and pod["tender_probability"] is None
            x0, y0, x1, y1 = pod["bbox"]
            assert 0 <= x0 < x1 <= e["width"] and 0 <= y0 < y1 <= e["height"]


def test_masks_overlays_cutouts_written(batch, inputs):
    out, results = batch
    for e in results["images"]:
        if e["error"] or "video" in e:
            continue
        mask = read_mask(out / e["mask"])
        assert mask.shape == (e["height"], e["width"])
        assert set(np.unique(mask).tolist()) <= {0, 255}
        assert e["okra_fraction"] == pytest.approx((mask > 0).mean(), abs=1e-5)
        name = Path(e["mask"]).stem
        overlay = read_image(out / "overlays" / f"{name}.jpg")
        assert overlay.shape == (e["height"], e["width"], 3)
        cutout = np.asarray(Image.open(out / "cutouts" / f"{name}.png"))
        assert cutout.shape == (e["height"], e["width"], 4)
        np.testing.assert_array_equal(cutout[:, :, 3], mask)
    two = _entry(results, os.path.join("a", "photo.jpg"))
    assert two["okra_found"] and len(two["pods"]) == 2
    assert {Path(two["mask"]).stem, Path(_entry(results, "photo.png")["mask"]).stem} == {"photo", "photo-2"}
    empty = _entry(results, "empty.png")
    assert empty["okra_found"] is False and empty["okra_fraction"] == 0.0 and empty["pods"] == []
    rotated = _entry(results, "rotated.jpg")
    assert (rotated["width"], rotated["height"]) == (100, 160)
    (pod,) = rotated["pods"]
    x0, y0, x1, y1 = pod["bbox"]
    assert y1 - y0 > x1 - x0  # the pod stands upright once the EXIF orientation is applied
    assert _entry(results, "scene.png")["error"] is None


def test_bad_inputs_recorded_and_batch_goes_on(batch):
    out, results = batch
    assert failed_count(results) == 2
    broken = _entry(results, "broken.jpg")
    assert "broken.jpg" in broken["error"] and "\n" not in broken["error"]
    assert broken["mask"] is None and broken["pods"] == []
    assert "no such file" in _entry(results, "missing.jpg")["error"]
    report = (out / "report.html").read_text()
    assert "broken.jpg" in report and "overlays/photo.jpg" in report and "clip.avi" in report


def test_video_gives_annotated_video_and_frame_stats(batch):
    out, results = batch
    video = _entry(results, "clip.avi")
    assert video["error"] is None and (video["width"], video["height"]) == (96, 64)
    assert len(video["frames"]) == 6 and video["fps"] == pytest.approx(10.0)
    assert [f["index"] for f in video["frames"]] == list(range(6))
    assert all(f["okra_found"] and len(f["pods"]) == 1 for f in video["frames"])
    xs = [f["pods"][0]["bbox"][0] for f in video["frames"]]
    assert xs == sorted(xs) and xs[-1] > xs[0]  # the pod moves right
    assert video["okra_found"] is True
    cap = cv2.VideoCapture(str(out / video["video"]))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 6


def test_names_and_inputs_expansion(inputs):
    assert unique_names([Path("a/x.jpg"), Path("b/x.png"), Path("x-2.jpg"), Path("c/X.jpg")]) == [
        "x",
        "x-2",
        "x-2-2",
        "X-3",
    ]
    found = expand_inputs([inputs / "a" / "*.jpg", inputs])
    assert found[0] == inputs / "a" / "photo.jpg"
    assert len(found) == len(set(found)) == 7
    assert inputs / "clip.avi" in found


def _okra(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(OKRA), *args], capture_output=True, text=True, timeout=180, env=env or os.environ.copy()
    )


def test_cli_segment_exit_codes_and_one_line_errors(model_dir, inputs, tmp_path):
    out = tmp_path / "cli"
    proc = _okra(
        "segment", str(inputs / "a" / "photo.jpg"), str(inputs / "broken.jpg"),
        "--out", str(out), "--model", str(model_dir), "--no-progress", "--threads", "1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("okra: error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert [line for line in proc.stderr.splitlines() if "broken.jpg" in line] == errors  # said once
    assert "1 of 2 inputs segmented" in proc.stdout
    assert (out / "masks" / "photo.png").is_file()

    ok = _okra(
        "segment", str(inputs / "empty.png"), "--out", str(out), "--model", str(model_dir), "--no-progress",
        "--zoom", "0,2",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / "results.json").read_text())["model"]["zooms"] == [0.0, 2.0]
    bad_zoom = _okra(
        "segment", str(inputs / "empty.png"), "--out", str(out), "--model", str(model_dir), "--zoom", "0.5"
    )
    assert bad_zoom.returncode == 2 and "Traceback" not in bad_zoom.stderr
    assert "--zoom" in bad_zoom.stderr and "0.5" in bad_zoom.stderr

    bad_model = _okra("segment", str(inputs / "empty.png"), "--out", str(out), "--model", "nope")
    assert bad_model.returncode == 2 and "Traceback" not in bad_model.stderr
    assert bad_model.stderr.strip().splitlines() == [
        line for line in bad_model.stderr.strip().splitlines() if "no built-in model named 'nope'" in line
    ]

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = _okra(
        "segment", str(inputs / "empty.png"), "--out", str(blocker / "out"), "--model", str(model_dir)
    )
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr, unwritable.stderr
    (line,) = unwritable.stderr.strip().splitlines()
    assert line.startswith(f"okra: error: {blocker / 'out'}") and line.endswith(": Not a directory")

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    cam = _okra("segment", "--source", "0", "--model", str(model_dir), env=env)
    assert cam.returncode == 2 and "needs a display" in cam.stderr and "Traceback" not in cam.stderr


def test_cli_models_lists_given_folder(model_dir):
    proc = _okra("models", str(model_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    (info,) = [i for i in json.loads(proc.stdout) if i["source"] == str(model_dir)]
    assert info["arch"] == "_test_green_segment" and info["input_size"] == list(MODEL_SIZE)
    assert info["files"]["model.onnx"] == (model_dir / "model.onnx").stat().st_size
    table = _okra("models", str(model_dir), env={**os.environ, "COLUMNS": "250"})
    assert table.returncode == 0 and "_test_green_segment" in table.stdout
