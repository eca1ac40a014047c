"""The JSON API: ``GET /api/health`` and ``POST /api/segment`` (plus shared request helpers).

``POST /api/segment`` takes one image as the multipart field ``file`` and answers the
``results.json`` entry of ``okra segment`` plus ``mask_png`` (base64 PNG, 0/255, the photo's
size) and ``overlay_jpeg`` (base64 JPEG of the photo with the mask drawn on it).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from PIL import Image

from okrainsight.flips import parse_flips
from okrainsight.imageio import encode_png
from okrainsight.segment import draw_overlay
from okrainsight.server.state import (
    RequestProblem,
    ServerState,
    decode_upload,
    segment_entry,
)
from okrainsight.tiling import parse_zooms

router = APIRouter(tags=["api"])
T = TypeVar("T")


def server_state(request: Request) -> ServerState:
    """The :class:`ServerState` of the app handling ``request``."""
    return request.app.state.okra


async def read_upload(state: ServerState, upload: UploadFile) -> tuple[bytes, np.ndarray]:
    """Read ``upload`` within the size limit and decode it by content: ``(bytes, (H, W, 3) uint8)``."""
    name = upload.filename or "upload"
    data = await upload.read(state.max_upload_bytes + 1)
    if len(data) > state.max_upload_bytes:
        raise RequestProblem(
            413, f"upload {name!r} is larger than the limit of {state.max_upload_bytes / 1024 / 1024:.1f} MB"
        )
    image = await run_limited(state, decode_upload, data, name)
    return data, image


async def run_limited(state: ServerState, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the inference pool; 504 when it takes longer than the request timeout."""
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(state.executor, fn, *args)
    try:
        return await asyncio.wait_for(future, timeout=state.request_timeout_s)
    except TimeoutError as exc:
        raise RequestProblem(
            504, f"the request took longer than {state.request_timeout_s:g} s and was abandoned"
        ) from exc


def png_b64(array: np.ndarray) -> str:
    return base64.b64encode(encode_png(array)).decode("ascii")


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_b64(image: np.ndarray, quality: int = 85) -> str:
    return base64.b64encode(jpeg_bytes(image, quality)).decode("ascii")


@router.get("/api/health", summary="Server, model and dataset status")
async def health(request: Request) -> dict[str, Any]:
    state = server_state(request)
    model = state.model
    vendor = state.static_dir / "vendor" / "ort.wasm.min.js"
    return {
        "status": "ok" if model is not None else "degraded",
        "version": state.version,
        "started": state.started,
        "model": None
        if model is None
        else {
            "name": model.card.name or model.card.arch,
            "arch": model.card.arch,
            "input_size": list(model.card.input_size),
            "threshold": model.card.threshold,
            "seed_threshold": model.card.seed_threshold,
            "zooms": list(model.segmenter.zooms),
            "flips": list(model.segmenter.flips),
        },
        "model_error": state.model_error,
        "data": None if state.data is None else str(state.data.root),
        "images": None if state.data is None else len(state.data.image_paths()),
        "teacher": state.label.teacher_name,
        "web_assets": vendor.is_file(),
        "max_upload_bytes": state.max_upload_bytes,
    }


@router.post("/api/segment", summary="Segment okra in one uploaded image")
async def segment(
    request: Request,
    file: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC)."),
    overlay: bool = Query(True, description="Include the overlay JPEG (base64) in the answer."),
    zoom: str | None = Query(
        None,
        description="Tiling, comma-separated (default: the model card's, e.g. 1,2): 1 = the largest tiles of "
        "the network input's shape, 2 = half that size, 0 = the whole image squeezed into one tile.",
    ),
    flips: str | None = Query(
        None,
        description="Mirror images averaged in, comma-separated (h, v, hv), or 'none' for one network run "
        "per tile (default: the model card's; the built-in model: h,v,hv).",
    ),
) -> dict[str, Any]:
    state = server_state(request)
    served = state.require_model()
    try:
        zooms = None if zoom is None else parse_zooms(zoom)
    except ValueError as exc:
        raise RequestProblem(422, f"zoom: {exc}") from exc
    try:
        mirrors = None if flips is None else parse_flips(flips)
    except ValueError as exc:
        raise RequestProblem(422, f"flips: {exc}") from exc
    _, image = await read_upload(state, file)
    overrides = {k: v for k, v in (("zooms", zooms), ("flips", mirrors)) if v is not None}
    run = functools.partial(served.segmenter.segment, **overrides) if overrides else served.segmenter.segment
    seg = await run_limited(state, run, image)
    entry = segment_entry(file.filename or "upload", seg)
    mask = np.asarray(seg.mask, dtype=bool)
    entry["mask_png"] = png_b64(np.where(mask, 255, 0).astype(np.uint8))
    entry["overlay_jpeg"] = jpeg_b64(draw_overlay(image, seg)) if overlay else None
    entry["model"] = served.card.name or served.card.arch
    return entry
