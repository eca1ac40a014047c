"""The explore page ``/explore/``: the dataset explorer of ``okra explore``, served live.

The page is built by :func:`okrainsight.explore.build_explorer` into the server's work folder and
rebuilt when the dataset changes (images, masks, manifest or prompts touched); its thumbnails are
served from beside it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from okrainsight.imageio import atomic_write_text
from okrainsight.server.api import run_limited, server_state
from okrainsight.server.state import RequestProblem, ServerState, resolve_inside

router = APIRouter()
PAGE = "explore.html"


def _fingerprint(state: ServerState) -> str:
    data = state.require_data()
    parts = []
    for p in (data.images_dir, data.masks_dir, data.soft_dir, data.manifest_path, data.prompts_path):
        if p.exists():
            st = p.stat()
            parts.append(f"{p.name}:{st.st_mtime_ns}:{st.st_size}")
    return "|".join(parts)


def _build(state: ServerState) -> Path:
    from okrainsight.explore import build_explorer

    data = state.require_data()
    folder = state.work_dir / "explore"
    page = folder / PAGE
    stamp = folder / "fingerprint.txt"
    key = _fingerprint(state)
    with state.label.write_lock:
        if not (page.is_file() and stamp.is_file() and stamp.read_text() == key):
            folder.mkdir(parents=True, exist_ok=True)
            build_explorer(data.root, page, thumb_size=256, progress=False)
            atomic_write_text(stamp, key)
    return page


@router.get("/explore", include_in_schema=False)
async def explore_redirect() -> Response:
    return RedirectResponse("/explore/")


@router.get("/explore/", include_in_schema=False)
async def explore(request: Request) -> Response:
    state = server_state(request)
    page = await run_limited(state, _build, state)
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/explore/{relative:path}", include_in_schema=False)
async def explore_files(request: Request, relative: str) -> Response:
    state = server_state(request)
    path = resolve_inside(state.work_dir / "explore", relative)
    if not path.is_file():
        raise RequestProblem(404, f"{relative!r}: no such explorer file")
    return FileResponse(path)
