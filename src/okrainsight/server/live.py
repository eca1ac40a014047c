"""The live camera page ``/``: the installable web app that runs the student in the browser.

Serves the page, the web app manifest, the service worker (at ``/sw.js`` so its scope is the
whole site), the PNG icons, the model (``/model/model.onnx`` + ``/model/card.json``), the
grader the page runs per pod (``/grader/info.json``: CNN URL, verdict threshold and the gate's area
and elongation thresholds; ``/grader/cnn.onnx`` when the grader has a CNN) and
``POST /api/capture`` (a camera frame and its mask saved into the dataset).
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import io
import json
import secrets
from typing import Any

import cv2
import numpy as np
from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image, ImageDraw

from okrainsight import __version__
from okrainsight.dataset import append_manifest
from okrainsight.imageio import atomic_write_bytes, encode_png, write_mask
from okrainsight.server.api import read_upload, run_limited, server_state
from okrainsight.server.state import RequestProblem, ServerState, decode_upload

router = APIRouter()

ICON_SIZES = (192, 512)
_NO_CACHE = {"Cache-Control": "no-cache"}


def asset_version(state: ServerState) -> str:
    """A short hash that changes when the page, the runtime or the model changes (names the SW cache)."""
    h = hashlib.sha256(__version__.encode())
    names = ("index.html", "app.js", "grade.js", "style.css", "vendor/ort.wasm.min.js")
    files = [state.static_dir / n for n in names]
    if state.model is not None:
        files.append(state.model.onnx_path)
    if state.grader is not None:
        h.update(json.dumps(state.grader_info(), sort_keys=True).encode())
        if state.grader.cnn_path is not None:
            files.append(state.grader.cnn_path)
    for f in files:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


@functools.cache
def make_icon(size: int) -> bytes:
    """A PNG app icon: a green okra pod on a dark rounded square (drawn once per size)."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle([0, 0, size - 1, size - 1], radius=size // 6, fill=(24, 40, 28, 255))
    s = size / 192
    pod = [(40 * s, 150 * s), (60 * s, 110 * s), (110 * s, 60 * s), (150 * s, 36 * s), (158 * s, 44 * s)]
    pod += [(136 * s, 84 * s), (90 * s, 132 * s), (52 * s, 160 * s)]
    d.polygon(pod, fill=(92, 170, 64, 255), outline=(200, 240, 150, 255))
    d.ellipse([140 * s, 26 * s, 166 * s, 52 * s], fill=(60, 110, 40, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    return FileResponse(server_state(request).static_dir / "index.html", headers=_NO_CACHE)


@router.get("/manifest.webmanifest", include_in_schema=False)
async def manifest() -> JSONResponse:
    body = {
        "name": "OkraInsight",
        "short_name": "Okra",
        "description": "Point the camera at okra: the model runs on this phone, offline.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#101814",
        "theme_color": "#1c3322",
        "icons": [
            {
                "src": f"/icons/icon-{s}.png",
                "sizes": f"{s}x{s}",
                "type": "image/png",
                "purpose": "any maskable",
            }
            for s in ICON_SIZES
        ],
    }
    return JSONResponse(body, media_type="application/manifest+json")


@router.get("/icons/icon-{size}.png", include_in_schema=False)
async def icon(size: int) -> Response:
    if size not in ICON_SIZES:
        raise RequestProblem(404, f"no icon of size {size}; sizes are {', '.join(map(str, ICON_SIZES))}")
    return Response(make_icon(size), media_type="image/png")


@router.get("/sw.js", include_in_schema=False)
async def service_worker(request: Request) -> Response:
    state = server_state(request)
    text = (state.static_dir / "sw.js").read_text(encoding="utf-8")
    text = text.replace("__OKRA_VERSION__", asset_version(state))
    extra = ["/grader/cnn.onnx"] if state.grader is not None and state.grader.cnn_path else []
    text = text.replace("/*__OKRA_EXTRA__*/[]", json.dumps(extra))
    headers = {**_NO_CACHE, "Service-Worker-Allowed": "/"}
    return Response(text, media_type="text/javascript", headers=headers)


@router.get("/model/model.onnx", summary="The served model (ONNX; uint8 NHWC image in)", tags=["model"])
async def model_file(request: Request) -> Response:
    served = server_state(request).require_model()
    return FileResponse(served.onnx_path, media_type="application/octet-stream", headers=_NO_CACHE)


@router.get("/model/card.json", summary="The served model's card", tags=["model"])
async def model_card(request: Request) -> JSONResponse:
    served = server_state(request).require_model()
    return JSONResponse(served.card_json, headers=_NO_CACHE)


@router.get(
    "/grader/info.json",
    summary="The grader the live page runs per pod: CNN URL, threshold, area/elongation gate",
    tags=["model"],
)
async def grader_info(request: Request) -> JSONResponse:
    return JSONResponse(server_state(request).grader_info(), headers=_NO_CACHE)


@router.get(
    "/grader/cnn.onnx",
    summary="The grader's pod-crop CNN (ONNX; crop float32 (N,3,32,64) in, tender_probability out)",
    tags=["model"],
)
async def grader_cnn(request: Request) -> Response:
    state = server_state(request)
    path = state.grader.cnn_path if state.grader is not None else None
    if path is None:
        raise RequestProblem(404, state.grader_info()["message"] or "the served grader has no CNN")
    return FileResponse(path, media_type="application/octet-stream", headers=_NO_CACHE)


def _save_capture(state: ServerState, image: np.ndarray, mask_bytes: bytes | None) -> dict[str, Any]:
    data = state.require_data()
    h, w = image.shape[:2]
    mask = None
    if mask_bytes:
        m = decode_upload(mask_bytes, "mask")[:, :, 0] > 127
        mask = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    now = _dt.datetime.now(_dt.UTC)
    stem = f"capture-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    image_path = data.images_dir / f"{stem}.png"
    atomic_write_bytes(image_path, encode_png(image))
    record: dict[str, Any] = {
        "stem": stem,
        "image": f"images/{image_path.name}",
        "source": "okra serve capture",
        "created": now.isoformat(timespec="seconds"),
        "okrainsight": __version__,
        "width": w,
        "height": h,
    }
    if mask is not None:
        write_mask(data.mask_path(stem), mask)
        record["mask"] = f"masks/{stem}.png"
        record["teacher"] = {"name": "student", "model": state.model.card.name if state.model else None}
        record["mask_area_px"] = int(mask.sum())
    append_manifest(data.manifest_path, record)
    return record


@router.post(
    "/api/capture", summary="Save a camera frame (and the browser's mask) into the dataset", tags=["api"]
)
async def capture(
    request: Request,
    image: UploadFile = File(..., description="The camera frame (PNG or JPEG)."),
    mask: UploadFile | None = File(None, description="The mask the page computed (PNG, any size)."),
) -> dict[str, Any]:
    state = server_state(request)
    state.require_data()
    _, frame = await read_upload(state, image)
    mask_bytes = None
    if mask is not None:
        mask_bytes = await mask.read(state.max_upload_bytes + 1)
        if len(mask_bytes) > state.max_upload_bytes:
            raise RequestProblem(413, "mask upload is larger than the upload limit")
    return await run_limited(state, _save_capture, state, frame, mask_bytes)
