"""The FastAPI app of ``okra serve``: one factory, the pages and the API mounted from their modules.

Pages: ``/`` live camera (``live.py``), ``/label`` click-to-label (``label.py``), ``/explore``
gallery (``explore.py``); JSON API under ``/api`` (``api.py``), OpenAPI docs at ``/docs``.
Every client error is a JSON ``{"detail": "one-line message"}`` with a 4xx status.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from okrainsight import __version__
from okrainsight.dataset import DatasetLayout
from okrainsight.errors import MissingDependencyError, OkraError
from okrainsight.server.state import (
    LabelSession,
    RequestProblem,
    ServerState,
    load_served_grader,
    load_served_model,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Swagger UI of ``/docs``: files of the npm package ``swagger-ui-dist`` (web/package-lock.json),
#: copied into ``static/vendor/`` by ``make web-assets``; nothing comes from a CDN at run time.
SWAGGER_JS_URL = "/static/vendor/swagger-ui-bundle.js"
SWAGGER_CSS_URL = "/static/vendor/swagger-ui.css"
SWAGGER_FAVICON_URL = "/static/vendor/favicon-32x32.png"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Room for the multipart framing around an upload of the maximum size.
_MULTIPART_SLACK = 64 * 1024
#: Paths of the live page and what it loads (served cross-origin isolated).
_ISOLATED_PREFIXES = ("/static/", "/sw.js", "/model/", "/grader/", "/manifest.webmanifest", "/icons/")


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reply_413(self, send: Any) -> None:
        limit_mb = (self.max_bytes - _MULTIPART_SLACK) / 1024 / 1024
        body = json.dumps({"detail": f"request body too large: the limit is {limit_mb:.1f} MB"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reply_413(send)
            return
        received = 0
        started = False
        refused = False

        async def limited_receive() -> dict:
            nonlocal received, refused, started
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer 413 now and tell the app the client went away, so it stops reading.
                    refused = True
                    if not started:
                        started = True
                        await self._reply_413(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if refused:
                return  # the 413 has been sent; drop whatever the app answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def create_app(
    data_dir: str | os.PathLike[str] | None = None,
    model: str | os.PathLike[str] = "default",
    teacher: str = "grabcut",
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    request_timeout_s: float = 30.0,
    inference_workers: int = 2,
    strict_model: bool = False,
    grader: str | os.PathLike[str] | None = "default",
) -> Any:
    """Build the app.

    Args:
        data_dir: dataset folder for the label page, the gallery and captures (``images/`` inside);
            None serves the live page and the API only.
        model: model folder, its ``model.onnx``, or a built-in name (``default``).
        teacher: teacher name for the label page (``grabcut``, ``sam`` ...).
        max_upload_bytes: largest accepted upload (default 20 MB).
        request_timeout_s: per-request limit for inference and labelling; 504 after it.
        inference_workers: inference threads (bounds concurrent model runs).
        strict_model: raise when the model cannot be loaded, instead of serving without it
            (the page and ``/api/health`` then say what is wrong).
        grader: tip-break grader folder whose ``cnn.onnx`` the live page runs per pod,
            ``"default"`` (the built-in grader, when installed) or None / ``"none"``. A named folder
            that cannot be loaded raises; the built-in one is skipped with a warning.

    Example:
        ``uvicorn.run(create_app("data/photos", model="runs/fast"), host="127.0.0.1", port=8000)``
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from fastapi.staticfiles import StaticFiles
    except ImportError as exc:
        raise MissingDependencyError("fastapi", "serve") from exc

    from okrainsight.server import api, explore, label, live

    served = None
    model_error = None
    try:
        served = load_served_model(model)
    except OkraError as exc:
        if strict_model:
            raise
        model_error = str(exc)
        log.warning("serving without a model: %s", exc)
    served_grader = None
    grader_error = None
    try:
        served_grader = load_served_grader(grader)
        if served_grader is None and grader is not None and os.fspath(grader).lower() != "none":
            grader_error = "the built-in grader is not installed"
    except OkraError as exc:
        if grader is not None and os.fspath(grader) != "default":
            raise
        grader_error = str(exc)
        log.warning("serving without a grader: %s", exc)
    layout = None
    if data_dir is not None:
        layout = DatasetLayout(data_dir).require()
    state = ServerState(
        model=served,
        model_error=model_error,
        data=layout,
        label=LabelSession(teacher_name=teacher),
        max_upload_bytes=int(max_upload_bytes),
        request_timeout_s=float(request_timeout_s),
        static_dir=STATIC_DIR,
        executor=ThreadPoolExecutor(max_workers=max(1, inference_workers), thread_name_prefix="okra-infer"),
        work_dir=Path(tempfile.mkdtemp(prefix="okra-serve-")),
        grader=served_grader,
        grader_error=grader_error,
    )

    @asynccontextmanager
    async def lifespan(_app: Any):  # noqa: ANN202
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(state.work_dir, ignore_errors=True)

    app = FastAPI(
        title="OkraInsight",
        version=__version__,
        description="Segment okra in photos, label photos with a teacher, and serve the live camera app.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own files, never from a CDN
        redoc_url=None,
    )
    app.state.okra = state

    @app.get("/docs", include_in_schema=False)
    async def _docs() -> Any:
        """Swagger UI from ``static/vendor/`` (npm ``swagger-ui-dist``, copied by ``make web-assets``)."""
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="OkraInsight API",
            swagger_js_url=SWAGGER_JS_URL,
            swagger_css_url=SWAGGER_CSS_URL,
            swagger_favicon_url=SWAGGER_FAVICON_URL,
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )

    @app.exception_handler(RequestProblem)
    async def _problem(_request: Request, exc: RequestProblem) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(v) for v in err.get("loc", ()) if v != "body") or "request"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(OkraError)
    async def _okra(_request: Request, exc: OkraError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.middleware("http")
    async def _isolation_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        path = request.url.path
        if path == "/" or path.startswith(_ISOLATED_PREFIXES):
            # Cross-origin isolation lets onnxruntime-web use WASM threads (?threads=2). The
            # /docs page needs none (its Swagger UI files come from /static/vendor/).
            response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
            response.headers.setdefault("Cross-Origin-Embedder-Policy", "require-corp")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    app.include_router(live.router)
    app.include_router(label.router)
    app.include_router(explore.router)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(max_upload_bytes) + _MULTIPART_SLACK)
    return app
