"""The API docs page (/docs): Swagger UI from the package's own files, nothing from a CDN (issue 7)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from okrainsight.server.app import STATIC_DIR, create_app


@pytest.fixture(scope="module")
def client() -> TestClient:
    vendor = STATIC_DIR / "vendor"
    if not (vendor / "swagger-ui-bundle.js").is_file():
        pytest.fail(f"{vendor} lacks swagger-ui-bundle.js: run 'make web-assets'")
    # a model that does not exist: the app serves without one, which is all /docs needs
    with TestClient(create_app(None, model="no-such-model", grader=None)) as c:
        yield c


def _urls(html: str) -> list[str]:
    """Every URL in src/href attributes and JavaScript string literals of a page."""
    attrs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    literals = re.findall(r"""["']((?:https?:)?//[^"']+|/[^"'\s]*)["']""", html)
    return attrs + literals


def test_docs_page_references_only_local_files(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "swagger-ui-bundle.js" in html and "swagger-ui.css" in html
    urls = _urls(html)
    assert urls, "the page must reference its assets for this test to mean anything"
    foreign = [u for u in urls if urlsplit(u).netloc or urlsplit(u).scheme in ("http", "https")]
    assert not foreign, foreign
    assert "cdn" not in html.lower()
    # the validator badge would fetch from validator.swagger.io
    assert re.search(r'"validatorUrl"\s*:\s*null', html)


def test_docs_assets_and_openapi_are_served(client: TestClient) -> None:
    html = client.get("/docs").text
    assets = [u for u in _urls(html) if u.startswith("/static/")]
    kinds = {u.rsplit(".", 1)[-1] for u in assets}
    assert {"js", "css", "png"} <= kinds, assets
    for url in assets:
        r = client.get(url)
        assert r.status_code == 200, url
        assert len(r.content) > 100, url
    assert (
        client.get("/static/vendor/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )
    spec = client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "OkraInsight"


def test_redoc_is_not_served_from_a_cdn(client: TestClient) -> None:
    r = client.get("/redoc")
    assert r.status_code == 404 or "cdn" not in r.text.lower()


def test_docs_page_renders_in_chromium_without_leaving_the_server(tmp_path) -> None:
    """Swagger UI draws the API's operations; every request the page makes goes to our server."""
    import shutil

    from playwright.sync_api import sync_playwright

    from test_server_browser import CHROMIUM_FLAGS, start_server

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Chromium is missing: install it with 'apt-get install chromium' (browser tests never skip)"
        )
    server, thread, port = start_server(create_app(None, model="no-such-model", grader=None))
    base = f"http://127.0.0.1:{port}"
    requested: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=chromium, args=list(CHROMIUM_FLAGS), headless=True
            )
            try:
                page = browser.new_page()
                page.on("request", lambda req: requested.append(req.url))
                page.goto(base + "/docs")
                page.wait_for_selector(".opblock", timeout=30_000)  # one block per operation
                assert page.locator(".opblock").count() >= 3
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert any(u.endswith("/static/vendor/swagger-ui-bundle.js") for u in requested), requested
    assert any(u.endswith("/openapi.json") for u in requested), requested
    outside = [u for u in requested if not u.startswith(base + "/") and not u.startswith("data:")]
    assert not outside, outside
