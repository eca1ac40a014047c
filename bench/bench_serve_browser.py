"""In-browser frame rate of the live page of ``okra serve`` (headless Chromium, fake camera).

Builds a student (untrained weights: speed does not depend on them), exports it to ONNX at
``--size``, serves it with ``okra serve``'s app on 127.0.0.1, and opens the live page in Debian's
Chromium with a fake camera playing a rendered okra scene (``--camera`` size, 30 fps). Prints the
processed frames per second, the inference and JavaScript milliseconds per frame, and the backend.
The camera delivers 30 frames per second, so 30 fps is the ceiling (one inference per new frame).

Usage::

    .venv/bin/python bench/bench_serve_browser.py --arch okra_lraspp_small --size 256 --seconds 10
    .venv/bin/python bench/bench_serve_browser.py --threads 2      # WASM threads (cross-origin isolated)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

#: The browser tests' helpers (fake-camera video, free port) are reused, not copied.
TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="okra_lraspp_small")
    ap.add_argument("--size", type=int, default=256, help="model input (square), pixels")
    ap.add_argument("--camera", default="640x480", help="fake camera WIDTHxHEIGHT")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="WASM threads (?threads=N)")
    ap.add_argument("--backend", default="wasm", choices=["wasm", "webgpu", "server"])
    args = ap.parse_args()

    import torch
    import uvicorn
    from playwright.sync_api import sync_playwright

    from okrainsight.checkpoint import ModelCard, save_card
    from okrainsight.export import export_onnx
    from okrainsight.server.app import create_app
    from okrainsight.students import create_student
    from okrainsight.synth import render_scene

    sys.path.insert(0, str(TESTS))
    from test_server_browser import CHROMIUM_FLAGS, fake_camera_flags, free_port, write_y4m

    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is missing: apt-get install chromium", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    cw, ch = (int(v) for v in args.camera.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="okra-bench-serve-") as tmp:
        root = Path(tmp)
        model = create_student(args.arch).eval()
        card = ModelCard(arch=args.arch, input_size=(args.size, args.size), name=f"bench-{args.arch}")
        save_card(root / "model", card)
        export_onnx(model, card, root / "model" / "model.onnx", parity_n=1)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        write_y4m(root / "cam.y4m", render_scene(0, (cw, ch), kind="white").image)

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(None, model=root / "model"), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        flags = [*CHROMIUM_FLAGS, *fake_camera_flags(root / "cam.y4m")]
        try:
            with sync_playwright() as pw:
                ctx = pw.chromium.launch_persistent_context(
                    str(root / "profile"), executable_path=chromium, args=flags, headless=True
                )
                page = ctx.new_page()
                page.goto(f"http://127.0.0.1:{port}/?backend={args.backend}&threads={args.threads}")
                page.wait_for_function(
                    "window.okraStats.frames > 20 || window.okraStats.error", timeout=120_000
                )
                if page.evaluate("window.okraStats.error"):
                    print("page error:", page.evaluate("window.okraStats.error"), file=sys.stderr)
                    return 1
                infer, cap, draw = [], [], []
                f0, t0 = page.evaluate("window.okraStats.frames"), time.monotonic()
                while time.monotonic() - t0 < args.seconds:
                    page.wait_for_timeout(250)
                    st = page.evaluate("window.okraStats")
                    infer.append(st["inferMs"])
                    cap.append(st["captureMs"])
                    draw.append(st["drawMs"])
                frames = page.evaluate("window.okraStats.frames") - f0
                elapsed = time.monotonic() - t0
                ctx.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(
        f"{args.arch} ({params:.2f} M params) at {args.size}x{args.size}, camera {cw}x{ch}@30, "
        f"backend {st['backend']}, threads {args.threads}: {frames / elapsed:.1f} fps "
        f"(median ms per frame: inference {statistics.median(infer):.1f}, JS capture "
        f"{statistics.median(cap):.1f}, JS overlay {statistics.median(draw):.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
