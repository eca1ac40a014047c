"""``okra eval`` output contract on a tiny hand-set model whose predictions are known exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from okrainsight.checkpoint import ModelCard, save_checkpoint
from okrainsight.cli import app
from okrainsight.dataset import append_manifest
from okrainsight.evaluate import CSV_COLUMNS, evaluate
from okrainsight.imageio import read_image, write_image, write_mask
from okrainsight.metrics import boundary_f_score, iou
from okrainsight.students import registry

torch.set_num_threads(1)

TINY = "_test_tiny_eval"


def green_detector() -> nn.Module:
    """1x1 convolution: logit = 20*G - 20*R - 2 on pixel/255, i.e. okra where G - R >= 25.5."""
    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([-20.0, 20.0, 0.0]).view(1, 3, 1, 1))
        conv.bias.fill_(-2.0)
    return conv


if TINY not in registry._REGISTRY:
    registry.register_student(TINY)(green_detector)


def expected_mask(image: np.ndarray) -> np.ndarray:
    g_minus_r = image[:, :, 1].astype(np.int32) - image[:, :, 0].astype(np.int32)
    return (20 * g_minus_r / 255.0 - 2 >= 0).astype(np.uint8) * 255


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    card = ModelCard(arch=TINY, input_size=(64, 48), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), name="tiny")
    return save_checkpoint(tmp_path / "model", green_detector(), card)


def make_data(root: Path, n: int = 6) -> Path:
    """Green ellipses on grey; a yellow-green distractor in odd images makes false positives."""
    rng = np.random.default_rng(1)
    for i in range(n):
        img = np.full((48, 64, 3), 180, np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        cv2.ellipse(mask, (32, 24), (20, 7), float(rng.uniform(0, 180)), 0, 360, 255, -1)
        img[mask > 0] = (60, 150, 50)
        if i % 2:
            cv2.circle(img, (int(rng.integers(5, 59)), int(rng.integers(5, 43))), 6, (120, 160, 40), -1)
        write_image(root / "images" / f"pod{i}.png", img)
        write_mask(root / "masks" / f"pod{i}.png", mask)
    return root


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_output_contract(model_dir: Path, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data")
    res = evaluate(
        model_dir, data, split="all", tolerance=1, out=tmp_path / "ev", latency_runs=2, progress=False
    )
    assert res.reference == "ground_truth" and res.fidelity is None and not res.errors
    rows = read_rows(tmp_path / "ev" / "per_image.csv")
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert [r["stem"] for r in rows] == [f"pod{i}" for i in range(6)]
    for r in rows:
        image = read_image(data / "images" / f"{r['stem']}.png")
        ref = cv2.imread(str(data / "masks" / f"{r['stem']}.png"), cv2.IMREAD_GRAYSCALE)
        pred = expected_mask(image)
        assert float(r["iou"]) == pytest.approx(iou(pred, ref), abs=1e-6)
        assert float(r["boundary_f"]) == pytest.approx(boundary_f_score(pred, ref, 1), abs=1e-6)
        assert r["error"] == "" and r["fidelity_iou"] == ""
    ious = [float(r["iou"]) for r in rows]
    assert ious[0] == pytest.approx(1.0) and min(ious) < 0.95  # distractors cost the odd images
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["summary"]["images"] == 6 and summary["tolerance_px"] == 1 and summary["split"] == "all"
    assert summary["summary"]["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-6)
    m = summary["model"]
    assert (m["parameters"], m["bytes_fp32"], m["bytes_fp16"]) == (4, 16, 8)
    assert m["latency_ms_cpu_median"] > 0 and m["input_size"] == [64, 48] and m["zooms"] == [1.0]
    assert (tmp_path / "ev" / "gallery.png").is_file()
    gallery = read_image(tmp_path / "ev" / "gallery.png")
    assert gallery.shape[0] > 3 * 160  # several rows of worst images
    assert [r["stem"] for r in res.worst(3)] == [
        r["stem"] for r in sorted(rows, key=lambda r: float(r["iou"]))
    ][:3]


def test_card_seed_threshold_drops_weak_distractors_in_eval(tmp_path: Path) -> None:
    """The yellow-green circles get probability ~0.76, the pods ~0.99: with a 0.9 seed threshold
    on the card, ``okra eval`` (like ``okra segment``) drops the circles that touch no pod."""
    data = make_data(tmp_path / "data")
    base = dict(arch=TINY, input_size=(64, 48), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    plain_dir = save_checkpoint(tmp_path / "plain", green_detector(), ModelCard(**base))
    seeded_dir = save_checkpoint(tmp_path / "seeded", green_detector(), ModelCard(**base, seed_threshold=0.9))
    kw = dict(split="all", tolerance=1, latency_runs=1, progress=False)
    plain = evaluate(plain_dir, data, out=tmp_path / "ev-plain", **kw)
    seeded = evaluate(seeded_dir, data, out=tmp_path / "ev-seeded", **kw)
    assert seeded.summary["recall"] == pytest.approx(plain.summary["recall"])
    assert seeded.summary["precision"] > plain.summary["precision"]
    assert seeded.summary["mean_iou"] > plain.summary["mean_iou"]
    assert json.loads((tmp_path / "ev-seeded" / "summary.json").read_text())["model"]["seed_threshold"] == 0.9
    assert json.loads((tmp_path / "ev-plain" / "summary.json").read_text())["model"]["seed_threshold"] is None


def test_fidelity_with_teacher_labels_and_ground_truth(model_dir: Path, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", n=4)
    # masks/ becomes the teacher's (a dilated version); masks_gt/ keeps the exact masks
    (data / "masks").rename(data / "masks_gt")
    for p in sorted((data / "masks_gt").iterdir()):
        gt = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        write_mask(data / "masks" / p.name, cv2.dilate(gt, np.ones((5, 5), np.uint8)))
        append_manifest(data / "manifest.jsonl", {"stem": p.stem, "teacher": "sam"})
    res = evaluate(model_dir, data, split="all", out=tmp_path / "ev", latency_runs=1, progress=False)
    assert res.reference == "ground_truth"
    assert res.fidelity is not None and res.teacher_accuracy is not None
    row = read_rows(tmp_path / "ev" / "per_image.csv")[0]
    assert float(row["iou"]) == pytest.approx(1.0)  # the student matches the exact mask
    assert float(row["fidelity_iou"]) < 0.95 and float(row["teacher_iou"]) == pytest.approx(
        float(row["fidelity_iou"])
    )

    # without ground truth the teacher's masks are the reference, reported as such
    (data / "masks_gt").rename(tmp_path / "gt_elsewhere")
    res2 = evaluate(model_dir, data, split="all", out=tmp_path / "ev2", latency_runs=1, progress=False)
    assert res2.reference == "teacher" and res2.fidelity is None
    assert res2.summary["iou"] < 0.95
    res3 = evaluate(
        model_dir,
        data,
        split="all",
        out=tmp_path / "ev3",
        ground_truth=tmp_path / "gt_elsewhere",
        latency_runs=1,
        progress=False,
    )
    assert res3.reference == "ground_truth" and res3.summary["iou"] == pytest.approx(res.summary["iou"])


def test_cli_records_bad_images_and_exits_nonzero(model_dir: Path, tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", n=3)
    (data / "images" / "pod1.png").write_bytes(b"not a png")
    out = tmp_path / "ev"
    result = CliRunner().invoke(
        app, ["eval", str(model_dir), str(data), "--split", "all", "--out", str(out), "--latency-runs", "1"]
    )
    assert result.exit_code == 1, result.output
    assert "accuracy vs ground truth" in result.output and "parameters" in result.output
    rows = read_rows(out / "per_image.csv")
    assert [r["stem"] for r in rows] == ["pod0", "pod1", "pod2"]
    assert rows[1]["error"] and rows[1]["iou"] == ""
    assert rows[0]["error"] == "" and float(rows[0]["iou"]) == pytest.approx(1.0)


def test_missing_model_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from okrainsight.cli import main

    data = make_data(tmp_path / "data", n=2)
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tmp_path / "nope"), str(data)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("okra: error:") and "nope" in err and len(err.splitlines()) == 1


def test_eval_tiles_photos_exactly_as_the_runtime_does(tmp_path: Path) -> None:
    """``okra eval`` (torch) and ``okra segment`` (ONNX Runtime) see the same tiles: their
    probabilities agree on a 3:1 photo at the card's zooms, and differ from squeezing it whole."""
    from okrainsight.evaluate import predict_probability
    from okrainsight.export import export_onnx
    from okrainsight.runtime import Segmenter

    card = ModelCard(
        arch=TINY,
        input_size=(64, 48),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        zooms=(1.0, 2.0),
        name="tiny",
    )
    folder = save_checkpoint(tmp_path / "model", green_detector(), card)
    export_onnx(green_detector().eval(), card, folder / "model.onnx")
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 270, 3), dtype=np.uint8), (0, 0), 2.0)
    seg = Segmenter.from_path(folder, threads=1)
    assert seg.zooms == (1.0, 2.0)
    ours = predict_probability(green_detector().eval(), card, image)
    theirs = seg.predict_probability(image)
    assert ours.shape == theirs.shape == (90, 270)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    squeezed = seg.predict_probability(image, zooms=(0,))
    assert np.abs(squeezed - theirs).max() > 0.05


def test_eval_averages_the_cards_flips_exactly_as_the_runtime_does(tmp_path: Path) -> None:
    """With ``flips`` on the card, ``okra eval`` (torch) and ``okra segment`` (ONNX Runtime) average
    the same mirror images: a lopsided 5x5 convolution gives the same probabilities both ways."""
    from okrainsight.checkpoint import save_card
    from okrainsight.evaluate import predict_probability
    from okrainsight.export import export_onnx
    from okrainsight.runtime import Segmenter

    torch.manual_seed(0)
    lopsided = torch.nn.Conv2d(3, 1, 5, padding=2).eval()
    card = ModelCard(
        arch=TINY, input_size=(64, 48), zooms=(1.0, 2.0), flips=("h", "v", "hv"), name="lopsided"
    )
    folder = tmp_path / "model"
    folder.mkdir()
    export_onnx(lopsided, card, folder / "model.onnx")
    save_card(folder, card)
    rng = np.random.default_rng(4)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 200, 3), dtype=np.uint8), (0, 0), 1.5)
    seg = Segmenter.from_path(folder, threads=1)
    assert seg.flips == ("h", "v", "hv")
    ours = predict_probability(lopsided, card, image)
    theirs = seg.predict_probability(image)
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    once = seg.predict_probability(image, flips=())
    assert np.abs(once - theirs).max() > 0.02  # the flips matter for this network
