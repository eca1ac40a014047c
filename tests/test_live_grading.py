"""The per-pod verdict of the live page and the grader export.

* ``static/grade.js`` (run in node) prepares the CNN's crop exactly like Python's
  :func:`~okrainsight.grading.cnn.cnn_input` and measures the gate's area and elongation like
  :func:`~okrainsight.grading.features.pod_shape_stats`, on rendered pods;
* the server serves the grader's ``cnn.onnx`` and gate thresholds (``/grader/...``) and lists the
  CNN in the service worker's precache;
* ``okra export --grader`` writes the grader's CNN (ONNX, Core ML spec) with parity.

The browser test of the verdict itself is in ``test_server_browser.py`` (it uses :func:`make_cnn_grader`).
Without ``node`` on PATH (it comes with npm, which ``make web-assets`` needs) the JS tests FAIL.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from okrainsight.grading.cnn import CNN_ONNX, cnn_input, export_cnn_onnx
from okrainsight.grading.features import pod_shape_stats
from okrainsight.grading.gate import GateConfig
from okrainsight.grading.model import BUILTIN_GRADER_DIR, Grader, LinearModel, load_grader
from okrainsight.runtime import find_pods
from okrainsight.server.app import create_app
from test_server_api import make_model_dir

GRADE_JS = Path(__file__).resolve().parents[1] / "src/okrainsight/server/static/grade.js"


def _node_runner(body: str) -> str:
    """A node script that loads grade.js as ``G``, reads a JSON list of cases ``c`` on stdin, maps each
    through ``body`` (JavaScript statements ending in ``return``) and writes the JSON list out."""
    return (
        "const G = require(process.argv[1]);\nlet s = '';\n"
        "process.stdin.on('data', (d) => { s += d; });\n"
        "process.stdin.on('end', () => {\n  const res = JSON.parse(s).map((c) => {\n"
        + body
        + "\n  });\n  process.stdout.write(JSON.stringify(res));\n});\n"
    )


_NODE_RUNNER = _node_runner(
    """
    const rgb = Uint8Array.from(Buffer.from(c.rgb, 'base64'));
    const lab = Uint8Array.from(Buffer.from(c.labels, 'base64'));
    const crop = G.cnnInput(rgb, c.width, c.height, lab, c.id, c.bbox);
    const shape = G.podShape(lab, c.width, c.id, c.bbox);
    const reason = G.gateReason(shape, c.width * c.height, c.gate);
    return { crop: Buffer.from(crop.buffer).toString('base64'), shape, reason };"""
)


def run_grade_js(cases: list[dict], runner: str = _NODE_RUNNER) -> list:
    """Run ``grade.js`` in node with ``runner`` on ``cases`` (JSON in on stdin, JSON out); the default
    runner takes rgb/labels base64, width, height, id, bbox, gate."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is missing: install Node.js (npm needs it for 'make web-assets'); JS tests never skip"
        )
    proc = subprocess.run(
        [node, "-e", runner, str(GRADE_JS)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def rendered_pod_cases(seeds: range, size: tuple[int, int]) -> tuple[list[dict], list[tuple]]:
    """JS cases (pods labelled 1..n in one label image per scene) and Python's answers."""
    from okrainsight.synth import render_scene

    gate = GateConfig().to_dict()
    cases, expected = [], []
    for seed in seeds:
        sc = render_scene(seed, size, kind="white" if seed % 2 else "wood")
        labels = np.zeros(sc.mask.shape, np.uint8)
        pods = find_pods(sc.mask > 0)
        for k, pod in enumerate(pods, start=1):
            x0, y0, x1, y1 = pod.bbox
            labels[y0:y1, x0:x1][pod.crop] = k
        for k, pod in enumerate(pods, start=1):
            cases.append(
                {
                    "rgb": _b64(sc.image),
                    "labels": _b64(labels),
                    "width": size[0],
                    "height": size[1],
                    "id": k,
                    "bbox": pod.bbox,
                    "gate": gate,
                }
            )
            expected.append(
                (cnn_input(sc.image, pod.crop, pod.bbox), pod_shape_stats(pod.crop), sc.image.shape)
            )
    return cases, expected


def test_js_crop_and_gate_match_python_on_rendered_pods() -> None:
    from okrainsight.grading.gate import gate_pod

    cases, expected = rendered_pod_cases(range(4), (160, 128))
    assert len(cases) >= 4
    out = run_grade_js(cases)
    for case, got, (crop, stats, shape) in zip(cases, out, expected, strict=True):
        js = np.frombuffer(base64.b64decode(got["crop"]), np.float32).reshape(3, 32, 64)
        assert crop.max() > 0.1, "the rendered pod should give a visible crop"
        diff = np.abs(js - crop)
        assert diff.max() < 0.02 and diff.mean() < 1e-3, (
            f"pod {case['bbox']}: JS crop differs ({diff.max():.4f})"
        )
        # a half-turn would be a different input: the rotation's sign matters, not only its axis
        assert np.abs(js - crop[:, ::-1, ::-1]).mean() > 10 * diff.mean() + 1e-3
        assert got["shape"]["area"] == stats["area_px"]
        assert got["shape"]["length"] == pytest.approx(stats["length_px"], rel=0.02)
        assert got["shape"]["maxWidth"] == pytest.approx(stats["max_width_px"], rel=0.02)
        # the JS gate agrees with Python's area and elongation tests
        m = np.zeros(shape[:2], bool)
        decision = gate_pod(crop_mask_full(case, m), shape)
        if decision.reason in ("ok", "too small", "too large", "not elongated", "too thin"):
            assert got["reason"] == decision.reason
        else:  # solidity / okra score: not tested on the page
            assert got["reason"] == "ok"


def crop_mask_full(case: dict, into: np.ndarray) -> np.ndarray:
    labels = np.frombuffer(base64.b64decode(case["labels"]), np.uint8).reshape(case["height"], case["width"])
    into[:] = labels == case["id"]
    return into


def test_js_gate_rejects_a_blob_and_keeps_empty_pods_safe() -> None:
    size = (64, 48)
    labels = np.zeros((48, 64), np.uint8)
    labels[10:30, 10:30] = 1  # a square: not elongated
    labels[40, 5] = 2  # one pixel: too small, and an empty crop for the CNN
    rgb = np.full((48, 64, 3), 120, np.uint8)
    gate = GateConfig().to_dict()
    common = {"rgb": _b64(rgb), "labels": _b64(labels), "width": size[0], "height": size[1], "gate": gate}
    out = run_grade_js(
        [{**common, "id": 1, "bbox": [10, 10, 30, 30]}, {**common, "id": 2, "bbox": [5, 40, 6, 41]}]
    )
    assert out[0]["reason"] == "not elongated"
    assert out[1]["reason"] == "too small"
    assert not np.frombuffer(base64.b64decode(out[1]["crop"]), np.float32).any()


# ----------------------------------------------------------------------------------
# A tiny grader with a CNN (also used by the browser test)
# ----------------------------------------------------------------------------------


def make_cnn_grader(folder: Path, *, seed: int = 0) -> Path:
    """A grader folder with a ``cnn.onnx`` whose output depends on every pixel of the crop:
    ``sigmoid(<w, crop> + b)`` with fixed random ``w`` (a rotated, flipped or shifted crop gives a
    different probability). The feature model is the built-in grader's (or a neutral one)."""
    import torch

    try:
        g = load_grader(BUILTIN_GRADER_DIR)
        g.cnn = None
    except Exception:  # noqa: BLE001 - any problem with the built-in grader: use a neutral one
        from okrainsight.grading.features import FEATURE_NAMES

        g = Grader(tender=LinearModel(coef=np.zeros(len(FEATURE_NAMES)), intercept=0.0))
    g.card = {**g.card, "name": "tiny-cnn", "cnn": {"input_size": [64, 32], "note": "test weights"}}
    g.save(folder)

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(seed)
            self.w = torch.nn.Parameter(torch.randn(1, 3, 32, 64, generator=gen) * 0.05)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid((x * self.w).sum(dim=(1, 2, 3))[:, None] * 2.0)

    export_cnn_onnx(Linear(), folder / CNN_ONNX)
    return folder


_SEED_RUNNER = _node_runner(
    """
    const mask = Uint8Array.from(Buffer.from(c.mask, 'base64'));
    const prob = new Float32Array(Uint8Array.from(Buffer.from(c.prob, 'base64')).buffer);
    return Buffer.from(G.keepSeeded(mask, prob, c.width, c.height, c.seed)).toString('base64');"""
)


_CLEAN_RUNNER = _node_runner(
    """
    const mask = Uint8Array.from(Buffer.from(c.mask, 'base64'));
    return Buffer.from(G.openClose(mask, c.width, c.height)).toString('base64');"""
)


def test_js_cleanup_equals_find_pods_opening_and_closing() -> None:
    """The live page labels pods on its mask cleaned as ``runtime.find_pods`` cleans it (opening then
    closing, OpenCV's 3x3 ellipse and default borders): equal pixel for pixel on random masks with
    specks, one-pixel spurs, pin holes and regions touching the frame's edge."""
    import cv2

    rng = np.random.default_rng(11)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    cases, expected = [], []
    for w, h in ((64, 48), (37, 53), (160, 128)):
        m = (cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5) > 0.5).astype(np.uint8)
        m[rng.random((h, w)) < 0.02] ^= 1  # specks and pin holes
        cases.append({"mask": _b64(m * 255), "width": w, "height": h})
        opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
        expected.append(cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel))
    for out, want, case in zip(run_grade_js(cases, _CLEAN_RUNNER), expected, cases, strict=True):
        got = np.frombuffer(base64.b64decode(out), np.uint8).reshape(case["height"], case["width"])
        raw = np.frombuffer(base64.b64decode(case["mask"]), np.uint8).reshape(got.shape) > 0
        assert np.array_equal(got, want) and (got != raw).any()


def test_js_seeds_keep_the_same_regions_as_python_hysteresis() -> None:
    """The live page's hysteresis (grade.js keepSeeded) equals okrainsight.hysteresis.okra_mask on
    smooth random probability maps with many regions, some with and some without a seed pixel."""
    import cv2

    from okrainsight.hysteresis import okra_mask

    rng = np.random.default_rng(5)
    cases, expected = [], []
    for w, h in ((64, 48), (37, 53)):
        prob = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.2)
        prob = ((prob - prob.min()) / (prob.max() - prob.min())).astype(np.float32)
        for t, seed in ((0.5, 0.8), (0.6, 0.85)):
            mask = prob >= t
            cases.append(
                {
                    "mask": _b64(mask.astype(np.uint8) * 255),
                    "prob": _b64(prob),
                    "width": w,
                    "height": h,
                    "seed": seed,
                }
            )
            expected.append(okra_mask(prob, t, seed))
    counts = []
    for out, want, case in zip(run_grade_js(cases, _SEED_RUNNER), expected, cases, strict=True):
        got = np.frombuffer(base64.b64decode(out), np.uint8).reshape(case["height"], case["width"]) > 0
        assert np.array_equal(got, want)
        n_low = cv2.connectedComponents(
            (np.frombuffer(base64.b64decode(case["mask"]), np.uint8) > 0).astype(np.uint8).reshape(got.shape),
            connectivity=8,
        )[0]
        n_kept = cv2.connectedComponents(got.astype(np.uint8), connectivity=8)[0]
        counts.append((n_low - 1, n_kept - 1))
    # in every case some regions were dropped and some kept: the comparison can fail both ways
    assert all(0 < kept < low for low, kept in counts), counts


def test_server_serves_grader_cnn_gate_and_precache(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    grader = make_cnn_grader(tmp_path / "grader")
    with TestClient(create_app(None, model=model, grader=grader)) as c:
        info = c.get("/grader/info.json").json()
        assert info["cnn"] is True and info["cnn_url"] == "/grader/cnn.onnx"
        assert info["gate"]["min_elongation"] == GateConfig().min_elongation
        assert set(info["gate"]) == {
            "min_area_fraction",
            "max_area_fraction",
            "min_elongation",
            "max_elongation",
        }
        r = c.get("/grader/cnn.onnx")
        assert r.status_code == 200 and r.content == (grader / CNN_ONNX).read_bytes()
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
        sw = c.get("/sw.js").text
        assert '["/grader/cnn.onnx"]' in sw and "'/grader/info.json'" in sw and "'/static/grade.js'" in sw
        version_with_cnn = sw.split("okra-", 1)[1][:12]
    # without a CNN: no CNN URL, a message, 404 for the file and nothing extra to precache
    plain = tmp_path / "plain"
    g = load_grader(grader)
    g.cnn = None
    g.card.pop("cnn")
    g.save(plain)
    with TestClient(create_app(None, model=model, grader=plain)) as c:
        info = c.get("/grader/info.json").json()
        assert info["cnn"] is False and "no CNN" in info["message"]
        r = c.get("/grader/cnn.onnx")
        assert r.status_code == 404 and "no CNN" in r.json()["detail"]
        sw = c.get("/sw.js").text
        assert "const EXTRA = [];" in sw and sw.split("okra-", 1)[1][:12] != version_with_cnn
    with TestClient(create_app(None, model=model, grader="none")) as c:
        info = c.get("/grader/info.json").json()
        assert info["cnn"] is False and info["message"].startswith("no grader")
    with pytest.raises(Exception, match="no such grader"):
        create_app(None, model=model, grader=tmp_path / "missing")


# ----------------------------------------------------------------------------------
# okra export --grader
# ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podcnn_grader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grader folder with an (untrained, seeded) PodCNN: cnn.safetensors + cnn.onnx."""
    import torch
    from safetensors.torch import save_file

    from okrainsight.grading.cnn import build_cnn

    folder = make_cnn_grader(tmp_path_factory.mktemp("podcnn"))
    torch.manual_seed(3)
    net = build_cnn().eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "cnn.safetensors"))
    export_cnn_onnx(net, folder / CNN_ONNX)
    return folder


def test_export_grader_writes_cnn_with_parity(podcnn_grader: Path, tmp_path: Path) -> None:
    import torch

    from okrainsight.export import export_grader, grader_parity_crops
    from okrainsight.grading.cnn import CnnRunner, load_cnn_torch

    res = export_grader(podcnn_grader, tmp_path / "grader", coreml=True)
    names = {p.name for p in res.files}
    assert {"cnn.onnx", "cnn.mlpackage", "grader.json", "grader.onnx"} <= names
    assert res.parity["onnx"]["max_abs_diff"] <= 1e-4
    assert res.parity["coreml"]["spec"]["outputs"] == ["tender_probability"]
    crops = grader_parity_crops(4, seed=11)
    with torch.no_grad():
        ref = load_cnn_torch(podcnn_grader)(torch.from_numpy(crops)).numpy().reshape(-1)
    got = CnnRunner(tmp_path / "grader" / "cnn.onnx").predict(crops)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert load_grader(tmp_path / "grader").cnn is not None
    assert not list((tmp_path / "grader").glob(".check-*"))


def test_export_builtin_grader_keeps_the_gates_okra_cnn(tmp_path: Path) -> None:
    """The built-in grader's okra-likeness CNN goes with the export, so the exported grader gates
    pods exactly as the built-in one does."""
    from okrainsight.export import export_grader
    from okrainsight.grading.model import BUILTIN_GRADER_DIR

    builtin = load_grader(BUILTIN_GRADER_DIR)
    assert builtin.okra_cnn is not None
    res = export_grader("default", tmp_path / "grader")
    assert {"okra_cnn.onnx", "cnn.onnx"} <= {p.name for p in res.files}
    exported = load_grader(tmp_path / "grader")
    assert exported.okra_cnn is not None
    card = (tmp_path / "grader" / "grader.json").read_bytes()
    assert card == (BUILTIN_GRADER_DIR / "grader.json").read_bytes()  # same gate thresholds


def test_export_grader_without_cnn_fails_cleanly(tmp_path: Path) -> None:
    from okrainsight.errors import ModelError
    from okrainsight.export import export_grader

    plain = tmp_path / "plain"
    g = load_grader(make_cnn_grader(tmp_path / "g"))
    g.cnn = None
    g.card.pop("cnn")
    g.save(plain)
    with pytest.raises(ModelError, match="has no CNN"):
        export_grader(plain, tmp_path / "out")
    assert not (tmp_path / "out" / "cnn.onnx").exists()


def test_cli_export_with_grader(podcnn_grader: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    from okrainsight.checkpoint import ModelCard, save_checkpoint
    from okrainsight.cli import main
    from okrainsight.students import create_student

    torch.manual_seed(0)
    kwargs = {"width": 0.5, "inter_channels": 16}
    student = create_student("okra_lraspp_small", **kwargs).eval()
    card = ModelCard(arch="okra_lraspp_small", arch_kwargs=kwargs, input_size=(64, 48), name="tiny")
    run = save_checkpoint(tmp_path / "run", student, card)
    out = tmp_path / "dist" / "okra.pt"
    args = ["export", str(run), "--format", "torchscript", "--out", str(out), "--grader", str(podcnn_grader)]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    stdout = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert int(exit_info.value.code or 0) == 0, stdout
    assert out.is_file() and (out.parent / "grader" / "cnn.onnx").is_file()
    assert "wrote grader CNN" in stdout and "onnx max difference" in stdout


def test_train_synth_with_cnn_writes_a_grader_the_page_can_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from okrainsight.cli import main

    out = tmp_path / "grader"
    args = ["grade", "train-synth", str(out), "--n", "24", "--n-negative", "4", "--size", "128x96"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--cnn", "--cnn-epochs", "2", "--no-progress"])
    stdout = " ".join(capsys.readouterr().out.split())
    assert int(exit_info.value.code or 0) == 0, stdout
    assert "CNN held-out ROC-AUC" in stdout
    g = load_grader(out)
    assert g.cnn is not None and g.card["kind"] == "features+logistic+cnn"
    info = g.card["cnn"]
    assert info["n_train_pods"] > 0 and info["n_holdout_pods"] > 0 and "--cnn" in g.card["command"]
    with TestClient(create_app(None, model=make_model_dir(tmp_path / "model"), grader=out)) as c:
        assert c.get("/grader/info.json").json()["cnn"] is True
