"""``okra serve`` in a real browser: Debian's Chromium, headless, driven by Playwright's Python API.

The fake camera plays a ``.y4m`` video written here from a rendered okra scene (one still frame
repeated, so the frame is known). Checked: the live page runs the model in the browser (WASM),
its mask equals the Python runtime's mask on the same frame, the frame rate is reported, the page
comes back offline from the service worker; the page grades each plausible pod with the grader's
CNN (in the browser) and its probability equals Python's on the same frame; the label page turns
clicks into a mask and Accept writes mask, prompts and manifest record.

No browser is downloaded: without ``chromium`` on PATH these tests FAIL, by design.
"""

from __future__ import annotations

import base64
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from okrainsight.dataset import DatasetLayout, load_prompts, read_manifest
from okrainsight.grading.cnn import CNN_ONNX, CnnRunner, cnn_input
from okrainsight.grading.model import load_grader
from okrainsight.imageio import read_mask
from okrainsight.server.app import create_app
from okrainsight.server.state import load_served_model
from test_live_grading import make_cnn_grader
from test_server_api import make_dataset, make_model_dir, scene

pytestmark = pytest.mark.browser

VIDEO_SIZE = (160, 128)  # also the model's input size, so the page feeds the frame unscaled
VENDOR = Path(__file__).resolve().parents[1] / "src/okrainsight/server/static/vendor/ort.wasm.min.js"


def rgb_to_i420(image: np.ndarray) -> bytes:
    """BT.601 limited-range YUV 4:2:0 planes (Y, U, V) of an (H, W, 3) uint8 RGB image (even H, W)."""
    rgb = image.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y, sub(u), sub(v)]
    return b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path, image: np.ndarray, frames: int = 30) -> None:
    """A YUV4MPEG2 (C420) video of ``image`` repeated ``frames`` times at 30 fps."""
    h, w = image.shape[:2]
    payload = rgb_to_i420(image)
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + payload)


#: Chromium flags of every browser test and bench: no sandbox (root in CI), no GPU, no first-run
#: pages, no network traffic of the browser's own (see the developers' guide).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def fake_camera_flags(video: Path) -> list[str]:
    """Extra Chromium flags of a fake camera playing ``video`` (a .y4m file), allowed without a prompt."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app) -> tuple[object, threading.Thread, int]:  # noqa: ANN001
    """Run ``app`` with uvicorn in a thread on a free port: ``(server, thread, port)``."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    return server, thread, port


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Chromium is missing: install it with 'apt-get install chromium' (browser tests never skip)"
        )
    if not VENDOR.is_file():
        pytest.fail(f"{VENDOR} is missing: run 'make web-assets' (npm ci in web/) first")
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("browser")
    model_dir = make_model_dir(root / "model", input_size=VIDEO_SIZE)
    data = make_dataset(root / "data", n=2, size=(256, 192))
    still, _, _ = scene(0, VIDEO_SIZE)
    video = root / "okra.y4m"
    write_y4m(video, still)

    grader_dir = make_cnn_grader(root / "grader")
    app = create_app(data.root, model=model_dir, teacher="grabcut", strict_model=True, grader=grader_dir)
    server, thread, port = start_server(app)

    args = [*CHROMIUM_FLAGS, *fake_camera_flags(video), "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(root / "profile"), executable_path=chromium, args=args, headless=True
        )
        try:
            yield {
                "context": context,
                "base": f"http://127.0.0.1:{port}",
                "model_dir": model_dir,
                "grader_dir": grader_dir,
                "root": root,
                "data": data,
                "still": still,
            }
        finally:
            context.close()
            server.should_exit = True
            thread.join(timeout=10)


def _wait_frames(page, more_than: int, timeout_ms: int = 60_000) -> None:  # noqa: ANN001
    page.wait_for_function(
        f"window.okraStats && (window.okraStats.frames > {more_than} || window.okraStats.error)",
        timeout=timeout_ms,
    )
    err = page.evaluate("window.okraStats.error")
    assert err is None, f"the live page failed: {err}"


def _decode(b64: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(shape)


def test_live_page_runs_the_model_in_the_browser_and_matches_python(setup: dict) -> None:
    page = setup["context"].new_page()
    page.goto(setup["base"] + "/")
    _wait_frames(page, 10)
    stats = page.evaluate("window.okraStats")
    assert stats["backend"] == "wasm"
    assert (stats["width"], stats["height"]) == VIDEO_SIZE
    frames_before = stats["frames"]
    page.wait_for_timeout(3000)
    stats = page.evaluate("window.okraStats")
    print(
        f"\nin-browser fps {stats['fps']:.1f} (inference {stats['inferMs']:.1f} ms, "
        f"JS {stats['jsMs']:.1f} ms, "
        f"{stats['frames'] - frames_before} frames in 3 s, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]})"
    )
    assert stats["frames"] > frames_before and stats["fps"] > 0
    assert page.inner_text("#fps").endswith("fps")

    w, h = VIDEO_SIZE
    last = page.evaluate("window.okraLastFrame()")
    frame = _decode(last["rgb"], (h, w, 3))
    browser_mask = _decode(last["mask"], (h, w)) > 127
    # The camera delivered the rendered still (through YUV 4:2:0 and back).
    assert np.abs(frame.astype(int) - setup["still"].astype(int)).mean() < 8
    python_mask = load_served_model(setup["model_dir"]).segmenter.segment(frame).mask
    assert python_mask.mean() > 0.01, "the test scene should contain okra"
    iou = (browser_mask & python_mask).sum() / (browser_mask | python_mask).sum()
    assert iou >= 0.95, f"browser and Python masks differ (IoU {iou:.3f})"
    only_mask = page.evaluate("window.okraLastMask()")
    assert (only_mask["width"], only_mask["height"]) == VIDEO_SIZE
    assert stats["pods"] >= 1 and "pod" in page.inner_text("#pods")

    # Second visit offline: the service worker serves page, runtime and model from its cache.
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=60_000)
    page.wait_for_function(
        "caches.keys().then(ks => Promise.all(ks.map(k => caches.open(k)"
        ".then(c => c.match('/model/model.onnx'))))).then(hits => hits.some(Boolean))",
        timeout=60_000,
    )
    setup["context"].set_offline(True)
    try:
        page.reload()
        _wait_frames(page, 3)
        assert page.evaluate("window.okraStats.backend") == "wasm"
        assert page.evaluate("navigator.onLine") is False
    finally:
        setup["context"].set_offline(False)
    page.close()


def test_live_page_grades_pods_in_the_browser_and_matches_python(setup: dict) -> None:
    import re

    import cv2

    page = setup["context"].new_page()
    page.goto(setup["base"] + "/")
    _wait_frames(page, 3)
    page.wait_for_function("window.okraStats.gradings >= 2 || window.okraStats.error", timeout=60_000)
    stats = page.evaluate("window.okraStats")
    assert stats["error"] is None and stats["grader"] == "cnn"
    print(f"\nin-browser grading {stats['gradeMs']:.1f} ms per grading, segmentation fps {stats['fps']:.1f}")
    w, h = VIDEO_SIZE
    last = page.evaluate("window.okraLastGrade()")
    frame = _decode(last["rgb"], (h, w, 3))
    graded_mask = _decode(last["mask"], (h, w)) > 127
    graded = [p for p in last["pods"] if p["tender_probability"] is not None]
    assert graded, f"no pod passed the page's gate: {last['pods']}"
    assert stats["okra"] is True
    runner = CnnRunner(setup["grader_dir"] / CNN_ONNX)
    n, labels = cv2.connectedComponents(graded_mask.astype(np.uint8), connectivity=8)
    for pod in graded:
        x0, y0, x1, y1 = pod["bbox"]
        ids = np.unique(labels[y0:y1, x0:x1][graded_mask[y0:y1, x0:x1]])
        assert len(ids) == 1
        crop = labels[y0:y1, x0:x1] == ids[0]
        python_p = float(runner.predict(cnn_input(frame, crop, pod["bbox"])[None])[0])
        print(f"pod {pod['bbox']}: browser {pod['tender_probability']:.4f}, Python {python_p:.4f}")
        assert abs(python_p - pod["tender_probability"]) < 0.1, (python_p, pod["tender_probability"])
    # The same frame through Python's own pipeline (runtime mask, find_pods, cnn_input): the
    # largest pod's probability agrees with the page's verdict for it.
    seg = load_served_model(setup["model_dir"]).segmenter.segment(frame)
    biggest = seg.pods[0]
    python_p = float(runner.predict(cnn_input(frame, biggest.crop, biggest.bbox)[None])[0])
    cx, cy = biggest.centroid
    near = min(
        graded,
        key=lambda p: (
            abs((p["bbox"][0] + p["bbox"][2]) / 2 - cx) + abs((p["bbox"][1] + p["bbox"][3]) / 2 - cy)
        ),
    )
    assert abs(python_p - near["tender_probability"]) < 0.1, (python_p, near["tender_probability"])
    texts = [v["text"] for v in stats["verdicts"] if v["text"]]
    assert texts and all(re.fullmatch(r"(tender|tough) \d{1,3}%", t) for t in texts)
    assert re.fullmatch(r"\d+ tender, \d+ tough", page.inner_text("#verdict"))
    # the grader's CNN is cached for offline use like the model
    page.wait_for_function(
        "caches.keys().then(ks => Promise.all(ks.map(k => caches.open(k)"
        ".then(c => c.match('/grader/cnn.onnx'))))).then(hits => hits.some(Boolean))",
        timeout=60_000,
    )
    page.close()


def test_live_page_without_grader_cnn_shows_no_verdict(setup: dict) -> None:
    plain = setup["root"] / "grader-plain"
    g = load_grader(setup["grader_dir"])
    g.cnn = None
    g.card.pop("cnn")
    g.save(plain)
    app = create_app(None, model=setup["model_dir"], strict_model=True, grader=plain)
    server, thread, port = start_server(app)
    try:
        page = setup["context"].new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        _wait_frames(page, 5)
        stats = page.evaluate("window.okraStats")
        assert stats["grader"] == "none" and stats["gradings"] == 0 and stats["error"] is None
        assert page.inner_text("#verdict") == "no verdict"
        assert "no CNN" in page.inner_text("#message")
        page.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _serve_page(setup: dict, model: Path, frames: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Serve ``model`` alone, open the live page, wait for ``frames`` frames; return the page's
    stats, its last camera frame and its mask."""
    app = create_app(None, model=model, strict_model=True)
    server, thread, port = start_server(app)
    try:
        page = setup["context"].new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        _wait_frames(page, frames)
        stats = page.evaluate("window.okraStats")
        last = page.evaluate("window.okraLastFrame()")
        page.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    w, h = stats["width"], stats["height"]  # the model's input size: the page scales frames to it
    return stats, _decode(last["rgb"], (h, w, 3)), _decode(last["mask"], (h, w)) > 127


def test_live_page_runs_int8_weight_models_in_the_browser(setup: dict) -> None:
    """onnxruntime-web runs a model whose convolution weights are stored as int8 (``okra export
    --int8-weights``, the built-in default's ``model.onnx`` since v0.9): the test model so stored
    gives the mask Python gives, and the shipped default model itself runs frame after frame."""
    import onnx

    from okrainsight.export import quantise_conv_weights
    from okrainsight.runtime import BUILTIN_DIR

    small = setup["root"] / "model-int8w"
    shutil.copytree(setup["model_dir"], small)
    proto = onnx.load(str(small / "model.onnx"))
    assert quantise_conv_weights(proto, min_elements=1) == 2
    onnx.save(proto, str(small / "model.onnx"))
    stats, frame, browser_mask = _serve_page(setup, small, 5)
    assert stats["backend"] == "wasm" and stats["error"] is None
    python_mask = load_served_model(small).segmenter.segment(frame).mask
    assert python_mask.mean() > 0.01
    assert (browser_mask & python_mask).sum() / (browser_mask | python_mask).sum() >= 0.95

    shipped = onnx.load(str(BUILTIN_DIR / "default" / "model.onnx"))
    assert any(i.name.endswith("_int8") for i in shipped.graph.initializer)
    stats, _, _ = _serve_page(setup, BUILTIN_DIR / "default", 3)
    assert stats["backend"] == "wasm" and stats["error"] is None and stats["frames"] > 3
    assert [stats["width"], stats["height"]] == list(load_served_model("default").card.input_size)


def test_server_fallback_backend_segments_frames(setup: dict) -> None:
    page = setup["context"].new_page()
    page.goto(setup["base"] + "/?backend=server")
    _wait_frames(page, 2)
    assert page.evaluate("window.okraStats.backend") == "server"
    w, h = VIDEO_SIZE
    last = page.evaluate("window.okraLastFrame()")
    frame = _decode(last["rgb"], (h, w, 3))
    server_mask = _decode(last["mask"], (h, w)) > 127
    python_mask = load_served_model(setup["model_dir"]).segmenter.segment(frame).mask
    assert (server_mask & python_mask).sum() / (server_mask | python_mask).sum() >= 0.95
    page.close()


def test_label_page_click_shows_mask_and_accept_writes_files(setup: dict) -> None:
    data: DatasetLayout = setup["data"]
    page = setup["context"].new_page()
    page.goto(setup["base"] + "/label")
    page.wait_for_function("window.okraLabel && window.okraLabel.stem === 'img0'")
    page.wait_for_function("document.getElementById('photo').naturalWidth > 0")
    assert "1 / 2" in page.inner_text("#progress")

    _, truth, pods = scene(0, (256, 192))
    inside = [p for p in pods[0]["axis_points"] if truth[int(p[1]), int(p[0])]]
    clicks = [inside[len(inside) // 10], inside[len(inside) // 2], inside[(9 * len(inside)) // 10]]
    box = page.locator("#overlay").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + (x + 0.5) * box["width"] / 256, box["y"] + (y + 0.5) * box["height"] / 192

    for x, y in clicks:  # left clicks: okra
        page.mouse.click(*at(x, y))
    page.mouse.click(*at(4, 4), button="right")  # right click: not okra
    page.wait_for_function(
        "(window.okraLabel.points.length === 4 && !window.okraLabel.busy && window.okraLabel.area > 0)"
        " || window.okraLabel.error",
        timeout=30_000,
    )
    assert page.evaluate("window.okraLabel.error") is None
    assert page.evaluate("window.okraLabel.labels") == [1, 1, 1, 0]

    page.keyboard.press("a")
    page.wait_for_function("window.okraLabel.accepted === 1 || window.okraLabel.error", timeout=30_000)
    assert page.evaluate("window.okraLabel.error") is None
    page.wait_for_function("window.okraLabel.stem === 'img1'")
    mask = read_mask(data.mask_path("img0")) > 0
    assert all(mask[int(y), int(x)] for x, y in clicks) and not mask[4, 4]
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.7, f"the teacher's mask should cover the clicked pod (IoU {iou:.2f})"
    prompts = load_prompts(data.prompts_path)["img0"]
    assert prompts["labels"] == [1, 1, 1, 0]
    assert prompts["points"][1] == pytest.approx([clicks[1][0] + 0.5, clicks[1][1] + 0.5], abs=1.0)
    records = [r for r in read_manifest(data.manifest_path) if r["stem"] == "img0"]
    assert len(records) == 1 and records[0]["teacher"] == "grabcut" and records[0]["accepted"] is True
    assert "1 labelled" in page.inner_text("#progress")
    page.close()
