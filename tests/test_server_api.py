"""Tests of the ``okra serve`` REST API (FastAPI TestClient): uploads, paths, labelling, concurrency.

The model is a tiny ONNX of the export contract built here: a "dark thing on a light
background" detector (okra pods are much darker than the renderer's white backdrop), so its
masks are meaningful without training. The data are rendered scenes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from okrainsight.checkpoint import ModelCard, save_card
from okrainsight.dataset import DatasetLayout, load_prompts, read_manifest
from okrainsight.export import export_onnx
from okrainsight.imageio import read_mask, write_image
from okrainsight.server.app import create_app

MODEL_SIZE = (64, 64)


# ----------------------------------------------------------------------------------
# Fixtures (also imported by test_server_browser.py)
# ----------------------------------------------------------------------------------


def make_model_dir(folder: Path, input_size: tuple[int, int] = MODEL_SIZE) -> Path:
    """A model folder (card.json + model.onnx) of the export contract: uint8 NHWC in, probability + mask out.

    The student maps ``pixel / 255`` to logits ``8 - 16 * mean(rgb)``, smoothed 3x3: okra = dark pixels.
    """
    import torch

    torch.set_num_threads(1)

    class DarkStudent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pixel = torch.nn.Conv2d(3, 1, 1)
            self.smooth = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
            with torch.no_grad():
                self.pixel.weight.fill_(-16.0 / 3.0)
                self.pixel.bias.fill_(8.0)
                self.smooth.weight.fill_(1.0 / 9.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.smooth(self.pixel(x))

    card = ModelCard(
        arch="_test_dark_serve",
        input_size=input_size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        threshold=0.5,
        name="test-dark",
    )
    folder.mkdir(parents=True, exist_ok=True)
    save_card(folder, card)
    export_onnx(DarkStudent().eval(), card, folder / "model.onnx", parity_n=1)
    return folder


@functools.cache
def _scene_seeds(size: tuple[int, int], n: int) -> tuple[int, ...]:
    """The first ``n`` renderer seeds whose scene suits the dark-pixel model: one dark pod, light backdrop."""
    from okrainsight.synth import render_scene

    found: list[int] = []
    for seed in range(300):
        s = render_scene(seed, size, kind="white")
        mask, lum = s.mask > 0, s.image.mean(axis=2)
        dark_pod = len(s.pods) == 1 and mask.mean() > 0.03 and np.percentile(lum[mask], 95) < 110
        if dark_pod and np.percentile(lum[~mask], 2) > 160:
            found.append(seed)
            if len(found) == n:
                return tuple(found)
    pytest.fail(f"the renderer gave fewer than {n} scenes with a dark pod on a light backdrop at {size}")


def scene(index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The ``index``-th rendered okra scene (0-based) that suits the dark-pixel test model:
    (image (H, W, 3) uint8, mask (H, W) bool, pods)."""
    from okrainsight.synth import render_scene

    s = render_scene(_scene_seeds(size, index + 1)[index], size, kind="white")
    return s.image, s.mask > 0, s.pods


def make_dataset(root: Path, n: int = 2, size: tuple[int, int] = (128, 96)) -> DatasetLayout:
    layout = DatasetLayout(root)
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, _, _ = scene(i, size)
        write_image(layout.images_dir / f"img{i}.png", image)
    return layout


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture()
def data(tmp_path: Path) -> DatasetLayout:
    return make_dataset(tmp_path / "data")


@pytest.fixture()
def client(model_dir: Path, data: DatasetLayout) -> TestClient:
    app = create_app(
        data.root, model=model_dir, teacher="grabcut", max_upload_bytes=200_000, strict_model=True
    )
    with TestClient(app) as c:
        yield c


# ----------------------------------------------------------------------------------
# Health, segment contract
# ----------------------------------------------------------------------------------


def test_health_reports_model_and_dataset(client: TestClient, data: DatasetLayout) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["model"]["input_size"] == list(MODEL_SIZE)
    assert body["images"] == 2
    assert body["data"] == str(data.root)
    assert body["max_upload_bytes"] == 200_000


def test_segment_contract_matches_segment_format(client: TestClient) -> None:
    image, truth, _ = scene(0, (128, 96))
    r = client.post("/api/segment", files={"file": ("okra.png", png_bytes(image), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    for key in ("path", "mask", "width", "height", "okra_found", "okra_fraction", "pods", "error"):
        assert key in body
    assert (body["path"], body["width"], body["height"], body["error"]) == ("okra.png", 128, 96, None)
    mask = decode_png(body["mask_png"])
    assert mask.shape == (96, 128)
    assert set(np.unique(mask)) <= {0, 255}
    predicted = mask > 0
    iou = (predicted & truth).sum() / (predicted | truth).sum()
    assert iou > 0.6, f"the dark-pixel model should find the rendered pod (IoU {iou:.2f})"
    assert body["okra_fraction"] == pytest.approx(predicted.mean(), abs=1e-4)
    assert body["okra_found"] is True and body["pods"]
    for pod in body["pods"]:
        assert set(pod) == {"area_px", "bbox", "length_px", "tender_probability"}
        x0, y0, x1, y1 = pod["bbox"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_jpeg"])))
    assert overlay.format == "JPEG" and overlay.size == (128, 96)


def test_segment_zoom_parameter_chooses_the_tiling(client: TestClient) -> None:
    """A 2-px dark stripe on a 4:1 image: squeezed whole into the 64x64 input (zoom=0) it blurs
    away; tiles at zoom 4 (64x64 px, the input's own size) keep it. A bad zoom is a 422."""
    image = np.full((128, 512, 3), 235, np.uint8)
    image[10:118, 300:302] = 20
    files = {"file": ("stripe.png", png_bytes(image), "image/png")}
    whole = client.post("/api/segment?overlay=false&zoom=0", files=files).json()
    fine = client.post("/api/segment?overlay=false&zoom=4", files=files).json()
    assert whole["okra_fraction"] == 0.0
    assert fine["okra_fraction"] > 0.5 * (108 * 2) / (128 * 512)
    bad = client.post("/api/segment?zoom=0.5", files=files)
    assert bad.status_code == 422 and "zoom" in bad.json()["detail"]
    health = client.get("/api/health").json()["model"]
    assert health["zooms"] == [1.0] and health["flips"] == []  # the card names neither
    mirrored = client.post("/api/segment?overlay=false&zoom=4&flips=h,v,hv", files=files).json()
    assert mirrored["okra_fraction"] == pytest.approx(fine["okra_fraction"], abs=0.01)  # a symmetric stripe
    bad_flips = client.post("/api/segment?flips=sideways", files=files)
    assert bad_flips.status_code == 422 and "flips" in bad_flips.json()["detail"]


def test_segment_blank_image_finds_no_okra(client: TestClient) -> None:
    blank = np.full((40, 50, 3), 235, np.uint8)
    body = client.post("/api/segment", files={"file": ("b.png", png_bytes(blank))}).json()
    assert body["okra_found"] is False and body["okra_fraction"] == 0.0 and body["pods"] == []


# ----------------------------------------------------------------------------------
# Bad uploads
# ----------------------------------------------------------------------------------


def test_oversized_upload_is_refused_with_413(client: TestClient) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > 200_000
    r = client.post("/api/segment", files={"file": ("big.png", data, "image/png")})
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_oversized_streamed_body_without_length_is_refused(client: TestClient) -> None:
    def chunks():  # a valid multipart start, then more file bytes than the limit, without a length
        yield b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(40):
            yield b"x" * 10_000

    r = client.post(
        "/api/segment", content=chunks(), headers={"content-type": "multipart/form-data; boundary=zzz"}
    )
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"%PDF-1.7 this is not a photo at all", 415, "not an image"),
        (b"hello world, just some text pretending", 415, "not an image"),
    ],
)
def test_empty_and_wrong_type_uploads(client: TestClient, payload: bytes, status: int, words: str) -> None:
    r = client.post("/api/segment", files={"file": ("photo.jpg", payload, "image/jpeg")})
    assert r.status_code == status
    assert words in r.json()["detail"] and "photo.jpg" in r.json()["detail"]


def test_corrupt_upload_is_422(client: TestClient) -> None:
    image, _, _ = scene(1, (128, 96))
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG")
    truncated = buf.getvalue()[: len(buf.getvalue()) // 3]
    r = client.post("/api/segment", files={"file": ("cut.jpg", truncated, "image/jpeg")})
    assert r.status_code == 422
    assert "corrupt" in r.json()["detail"]


def test_missing_file_field_is_a_clear_4xx(client: TestClient) -> None:
    r = client.post("/api/segment", data={"other": "x"})
    assert r.status_code == 422
    assert "file" in r.json()["detail"]


# ----------------------------------------------------------------------------------
# Paths: traversal and symlink escape
# ----------------------------------------------------------------------------------


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(np.full((8, 8, 3), 7, np.uint8)))
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    return outside


@pytest.mark.parametrize(
    "url",
    [
        "/data/..%2Fsecret.txt",
        "/data/%2e%2e/secret.txt",
        "/data/images/..%2F..%2Fsecret.txt",
        "/data/%2Fetc%2Fpasswd",
        "/data//etc/passwd",
    ],
)
def test_traversal_is_refused(client: TestClient, secret: Path, url: str) -> None:
    r = client.get(url)
    assert 400 <= r.status_code < 500
    assert b"TOP-SECRET" not in r.content and b"root:" not in r.content


def test_dataset_files_inside_the_root_are_served(client: TestClient, data: DatasetLayout) -> None:
    r = client.get("/data/images/img0.png")
    assert r.status_code == 200
    assert r.content == (data.images_dir / "img0.png").read_bytes()


def test_symlink_escape_is_refused(client: TestClient, data: DatasetLayout, secret: Path) -> None:
    (data.images_dir / "evil.png").symlink_to(secret)
    (data.root / "leak.txt").symlink_to(secret.with_suffix(".txt"))
    assert client.get("/data/images/evil.png").status_code == 403
    r = client.get("/data/leak.txt")
    assert r.status_code == 403 and b"TOP-SECRET" not in r.content
    assert client.get("/api/images/evil/image").status_code == 403
    r = client.post("/api/label", json={"stem": "evil", "points": [[2, 2]], "labels": [1]})
    assert r.status_code == 403
    assert "outside the dataset" in r.json()["detail"]


@pytest.mark.parametrize("stem", ["../secret", "..", "/etc/passwd", "a\\b"])
def test_label_refuses_path_like_image_ids(client: TestClient, secret: Path, stem: str) -> None:
    r = client.post("/api/label", json={"stem": stem, "points": [[2, 2]], "labels": [1]})
    assert r.status_code in (400, 404)
    assert "detail" in r.json()


# ----------------------------------------------------------------------------------
# Concurrency and timeouts
# ----------------------------------------------------------------------------------


def test_concurrent_segment_requests_are_all_served(client: TestClient) -> None:
    uploads = [png_bytes(scene(i % 2, (128, 96))[0]) for i in range(2)]

    def call(i: int) -> tuple[int, str]:
        r = client.post("/api/segment?overlay=false", files={"file": (f"f{i}.png", uploads[i % 2])})
        return r.status_code, r.json().get("mask_png", "")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(call, range(18)))
    assert all(code == 200 for code, _ in results)
    assert len({m for i, (_, m) in enumerate(results) if i % 2 == 0}) == 1  # same input, same mask
    assert len({m for i, (_, m) in enumerate(results) if i % 2 == 1}) == 1


def test_slow_inference_times_out_with_504(model_dir: Path, data: DatasetLayout) -> None:
    app = create_app(data.root, model=model_dir, request_timeout_s=0.2)
    release = threading.Event()

    class Slow:
        def segment(self, image: np.ndarray):  # noqa: ANN202
            release.wait(5)
            raise RuntimeError("never answered")

    app.state.okra.model.segmenter = Slow()
    with TestClient(app) as c:
        t0 = time.monotonic()
        r = c.post("/api/segment", files={"file": ("a.png", png_bytes(np.zeros((8, 8, 3), np.uint8)))})
        release.set()
    assert r.status_code == 504 and "longer than" in r.json()["detail"]
    assert time.monotonic() - t0 < 5


def test_without_model_health_is_degraded_and_segment_503(tmp_path: Path) -> None:
    with TestClient(create_app(None, model=tmp_path / "nope")) as c:
        body = c.get("/api/health").json()
        assert body["status"] == "degraded" and "nope" in body["model_error"]
        r = c.post("/api/segment", files={"file": ("a.png", png_bytes(np.zeros((8, 8, 3), np.uint8)))})
        assert r.status_code == 503
        r = c.get("/api/images")
        assert r.status_code == 409 and "--data" in r.json()["detail"]


# ----------------------------------------------------------------------------------
# Labelling, capture, listing, pages
# ----------------------------------------------------------------------------------


def _pod_point(index: int, size: tuple[int, int]) -> list[float]:
    _, mask, pods = scene(index, size)
    pts = [p for p in pods[0]["axis_points"] if mask[int(round(p[1])), int(round(p[0]))]]
    return pts[len(pts) // 2]


def test_label_then_accept_writes_mask_prompts_and_manifest(client: TestClient, data: DatasetLayout) -> None:
    x, y = _pod_point(0, (128, 96))
    prompts = {"stem": "img0", "points": [[x, y], [3.0, 3.0]], "labels": [1, 0]}
    r = client.post("/api/label", json=prompts)
    assert r.status_code == 200, r.text
    body = r.json()
    mask = decode_png(body["mask_png"]) > 0
    assert mask.shape == (96, 128) and body["area_px"] == int(mask.sum()) > 0
    assert mask[int(round(y)), int(round(x))] and not mask[3, 3]

    r = client.post("/api/label/accept", json=prompts)
    assert r.status_code == 200, r.text
    saved = read_mask(data.mask_path("img0")) > 0
    assert np.array_equal(saved, mask)
    stored = load_prompts(data.prompts_path)["img0"]
    assert stored["labels"] == [1, 0] and stored["points"][0] == pytest.approx([x, y])
    (record,) = read_manifest(data.manifest_path)
    assert record["stem"] == "img0" and record["kind"] == "label" and record["teacher"] == "grabcut"
    assert (
        record["mask_sha256"]
        == hashlib.sha256(np.where(saved, 255, 0).astype(np.uint8).tobytes()).hexdigest()
    )
    assert record["image_sha256"] == hashlib.sha256((data.images_dir / "img0.png").read_bytes()).hexdigest()
    listing = client.get("/api/images").json()
    assert listing["labelled"] == 1 and [i["stem"] for i in listing["images"]] == ["img0", "img1"]


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"stem": "img0", "points": [[5, 5]], "labels": [1, 0]}, "one label per point"),
        ({"stem": "img0", "points": [[5, 5]], "labels": [2]}, "1 (okra) or 0"),
        ({"stem": "img0", "points": [], "labels": []}, "at least one point"),
        ({"stem": "img0", "points": [[500, 5]], "labels": [1]}, "outside the 128x96 image"),
        ({"stem": "nothere", "points": [[5, 5]], "labels": [1]}, "no image 'nothere'"),
    ],
)
def test_label_bad_prompts_are_4xx(client: TestClient, payload: dict, words: str) -> None:
    r = client.post("/api/label", json=payload)
    assert 400 <= r.status_code < 500
    assert words in r.json()["detail"]


def test_review_mode_lists_review_csv_stems(client: TestClient, data: DatasetLayout) -> None:
    (data.root / "review.csv").write_text("stem,suspicion,flags\nimg1,0.9,thin\nmissing,0.5,\n")
    body = client.get("/api/images?review=true").json()
    assert [i["stem"] for i in body["images"]] == ["img1"] and body["review_available"] is True


def test_capture_saves_frame_mask_and_record(client: TestClient, data: DatasetLayout) -> None:
    frame, truth, _ = scene(1, (128, 96))
    small = np.asarray(
        Image.fromarray(np.where(truth, 255, 0).astype(np.uint8)).resize((64, 48), Image.NEAREST)
    )
    files = {"image": ("f.png", png_bytes(frame)), "mask": ("m.png", png_bytes(np.dstack([small] * 3)))}
    r = client.post("/api/capture", files=files)
    assert r.status_code == 200, r.text
    stem = r.json()["stem"]
    assert (data.images_dir / f"{stem}.png").is_file()
    saved = read_mask(data.mask_path(stem)) > 0
    assert saved.shape == (96, 128)
    assert (saved & truth).sum() / (saved | truth).sum() > 0.8
    assert read_manifest(data.manifest_path)[-1]["stem"] == stem


def test_pages_manifest_and_model_are_served(client: TestClient, model_dir: Path) -> None:
    live = client.get("/")
    assert "app.js" in live.text and live.headers["cross-origin-embedder-policy"] == "require-corp"
    assert "cross-origin-embedder-policy" not in client.get("/docs").headers  # Swagger UI comes from a CDN
    assert "label.js" in client.get("/label").text
    page = client.get("/explore").text
    assert "img0" in page and "img1" in page
    thumb = re.search(r'src="(explore_files/[^"]+\.jpg)"', page).group(1)
    assert client.get("/explore/" + thumb).headers["content-type"] == "image/jpeg"
    assert client.get("/explore/..%2F..%2Fetc%2Fpasswd").status_code in (403, 404)
    manifest = client.get("/manifest.webmanifest").json()
    assert manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        png = Image.open(io.BytesIO(client.get(icon["src"]).content))
        assert png.format == "PNG" and f"{png.size[0]}x{png.size[1]}" == icon["sizes"]
    sw = client.get("/sw.js")
    assert "__OKRA_VERSION__" not in sw.text and "/model/model.onnx" in sw.text
    assert client.get("/model/model.onnx").content == (model_dir / "model.onnx").read_bytes()
    assert json.loads(client.get("/model/card.json").text)["input_size"] == list(MODEL_SIZE)
    assert "/api/segment" in client.get("/openapi.json").json()["paths"]


def test_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    from cryptography import x509

    from okrainsight.server.tls import ensure_self_signed

    cert, key = ensure_self_signed(tmp_path)
    first = cert.read_bytes()
    parsed = x509.load_pem_x509_certificate(first)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert key.stat().st_mode & 0o077 == 0
    assert ensure_self_signed(tmp_path)[0].read_bytes() == first


def test_serve_help_has_an_example() -> None:
    from typer.testing import CliRunner

    from okrainsight.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert out.exit_code == 0 and "Example" in out.output and "--https" in out.output
