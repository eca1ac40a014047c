"""The click-to-label page ``/label`` and its API.

The page walks the images of ``--data`` (or, in review mode, the stems of ``review.csv``).
Each click posts the points to ``POST /api/label``; the teacher answers a mask (its image
embedding is computed once per image). ``POST /api/label/accept`` writes the mask
(``masks/<stem>.png``, atomic), the prompts (``prompts.json``, atomic) and a provenance record
(``manifest.jsonl``). Points are ``(x, y)`` pixels of the oriented image, origin top-left;
labels are 1 (okra) or 0 (not okra).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from okrainsight import __version__
from okrainsight.dataset import DatasetLayout, append_manifest, load_prompts, save_prompts
from okrainsight.errors import DatasetError
from okrainsight.imageio import read_image, write_mask
from okrainsight.server.api import jpeg_bytes, png_b64, run_limited, server_state
from okrainsight.server.state import RequestProblem, ServerState, resolve_inside

router = APIRouter()
REVIEW_FILE = "review.csv"


class Prompts(BaseModel):
    """Clicks on one image: ``points`` (x, y) pixels, ``labels`` 1 okra / 0 not okra, optional box."""

    stem: str = Field(..., description="Image id: the file name without extension (see GET /api/images).")
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=256)
    labels: list[int] = Field(default_factory=list, max_length=256)
    box: tuple[float, float, float, float] | None = None


def review_stems(data: DatasetLayout) -> list[str]:
    """Stems listed in ``review.csv`` (column ``stem``, else the first column), in file order."""
    path = data.root / REVIEW_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return []
    header = [c.strip().lower() for c in rows[0]]
    col = header.index("stem") if "stem" in header else 0
    body = rows[1:] if "stem" in header else rows
    seen: list[str] = []
    for row in body:
        if len(row) > col and row[col].strip() and row[col].strip() not in seen:
            seen.append(row[col].strip())
    return seen


def _arrays(p: Prompts) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if len(p.points) != len(p.labels):
        raise RequestProblem(
            400, f"{len(p.points)} points but {len(p.labels)} labels; give one label per point"
        )
    if any(v not in (0, 1) for v in p.labels):
        raise RequestProblem(400, "labels must be 1 (okra) or 0 (not okra)")
    if not p.points and p.box is None:
        raise RequestProblem(400, "give at least one point or a box")
    points = np.asarray(p.points, dtype=np.float32).reshape(-1, 2)
    labels = np.asarray(p.labels, dtype=np.int32)
    box = None if p.box is None else np.asarray(p.box, dtype=np.float32)
    return points, labels, box


@router.get("/label", include_in_schema=False)
async def label_page(request: Request) -> Response:
    return FileResponse(
        server_state(request).static_dir / "label.html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/api/images", summary="List the dataset's images", tags=["api"])
async def list_images(
    request: Request, review: bool = Query(False, description="Only the stems of review.csv, in its order.")
) -> dict[str, Any]:
    state = server_state(request)
    data = state.require_data()
    paths = {p.stem: p for p in data.image_paths()}
    order = review_stems(data) if review else list(paths)
    images = [
        {
            "stem": stem,
            "name": paths[stem].name,
            "url": f"/api/images/{stem}/image",
            "has_mask": data.mask_path(stem).is_file(),
        }
        for stem in order
        if stem in paths
    ]
    return {
        "images": images,
        "count": len(images),
        "labelled": sum(i["has_mask"] for i in images),
        "review_available": (data.root / REVIEW_FILE).is_file(),
    }


@router.get("/api/images/{stem}/image", summary="One dataset image, oriented, as JPEG", tags=["api"])
async def image_file(request: Request, stem: str) -> Response:
    state = server_state(request)
    path = state.image_path(stem)
    image = await run_limited(state, read_image, path)
    return Response(jpeg_bytes(image, quality=90), media_type="image/jpeg")


@router.get(
    "/data/{relative:path}", summary="A raw file of the dataset (inside its folder only)", tags=["api"]
)
async def data_file(request: Request, relative: str) -> Response:
    state = server_state(request)
    data = state.require_data()
    path = resolve_inside(data.root, relative)
    if not path.is_file():
        raise RequestProblem(404, f"{relative!r}: no such file in the dataset")
    return FileResponse(path)


def _predict(state: ServerState, p: Prompts) -> tuple[np.ndarray, float, float]:
    path = state.image_path(p.stem)
    points, labels, box = _arrays(p)
    t0 = time.perf_counter()
    mask, score = state.label.predict(p.stem, path, points, labels, box)
    return mask, score, (time.perf_counter() - t0) * 1000.0


@router.post("/api/label", summary="Teacher mask for clicks on one dataset image", tags=["api"])
async def label(request: Request, prompts: Prompts) -> dict[str, Any]:
    state = server_state(request)
    state.require_data()
    mask, score, ms = await run_limited(state, _predict, state, prompts)
    h, w = mask.shape
    return {
        "stem": prompts.stem,
        "width": w,
        "height": h,
        "area_px": int(mask.sum()),
        "score": score,
        "elapsed_ms": round(ms, 1),
        "mask_png": png_b64(np.where(mask, 255, 0).astype(np.uint8)),
    }


def _accept(state: ServerState, p: Prompts) -> dict[str, Any]:
    data = state.require_data()
    image_path = state.image_path(p.stem)
    mask, score = state.label.predict(p.stem, image_path, *_arrays(p))
    mask_path = data.mask_path(p.stem)
    resolve_inside(data.root, str(mask_path.relative_to(data.root)))
    with state.label.write_lock:
        write_mask(mask_path, mask)
        try:
            prompts = load_prompts(data.prompts_path) if data.prompts_path.is_file() else {}
        except DatasetError as exc:
            raise RequestProblem(409, f"cannot update prompts: {exc}") from exc
        prompts[p.stem] = {
            "points": [[float(x), float(y)] for x, y in p.points],
            "labels": list(p.labels),
            "box": None if p.box is None else [float(v) for v in p.box],
        }
        save_prompts(data.prompts_path, prompts)
        pixels = np.where(mask, 255, 0).astype(np.uint8)
        info = state.label.describe()
        record = {
            "kind": "label",
            "stem": p.stem,
            "label_id": uuid.uuid4().hex,
            "image": str(image_path.relative_to(data.root.resolve())),
            "image_sha256": hashlib.sha256(image_path.read_bytes()).hexdigest(),
            "mask": str(Path(mask_path).relative_to(data.root)),
            "teacher": info.get("name", state.label.teacher_name),
            "teacher_info": info,
            "checkpoint_sha256": info.get("checkpoint_sha256"),
            "prompts": prompts[p.stem],
            "auto_prompted": False,
            "prompt_source": "okra serve label",
            "score": score,
            "mask_area": int(mask.sum()),
            "mask_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
            "accepted": True,
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "version": __version__,
        }
        append_manifest(data.manifest_path, record)
    return record


@router.post("/api/label/accept", summary="Write the mask, prompts and provenance of one image", tags=["api"])
async def accept(request: Request, prompts: Prompts) -> dict[str, Any]:
    state = server_state(request)
    state.require_data()
    return await run_limited(state, _accept, state, prompts)
