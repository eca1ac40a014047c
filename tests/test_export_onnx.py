"""ONNX export: the uint8-in wrapper, metadata in the file, parity in ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from okrainsight.checkpoint import ModelCard
from okrainsight.errors import ModelError
from okrainsight.export import (
    ExportWrapper,
    check_parity,
    export_onnx,
    make_wrapper,
    parity_images,
    read_onnx_metadata,
    torch_runner,
)
from okrainsight.students import create_student, list_students

torch.set_num_threads(1)

SIZE = (64, 48)  # (width, height)


class _TinyNet(nn.Module):
    """Test-only student: two convolutions, logits (N, 1, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _student() -> tuple[nn.Module, ModelCard]:
    torch.manual_seed(0)
    if "okra_lraspp_small" in list_students():
        model = create_student("okra_lraspp_small", width=0.5, inter_channels=16)
        arch = "okra_lraspp_small"
    else:  # the real students are not written yet
        model, arch = _TinyNet(), "_test_tiny_export"
    card = ModelCard(
        arch=arch,
        arch_kwargs={"width": 0.5, "inter_channels": 16},
        input_size=SIZE,
        threshold=0.5,
        name="tiny-export-test",
        metrics={"val_iou": 0.5},
    )
    return model.eval(), card


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, card = _student()
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    result = export_onnx(model, card, out)
    return model, card, result


def test_wrapper_takes_uint8_nhwc_and_matches_manual_preprocessing():
    model, card = _student()
    wrapper = make_wrapper(model, card)
    assert isinstance(wrapper, ExportWrapper) and isinstance(wrapper, nn.Module)
    img = torch.from_numpy(parity_images(SIZE, 1)[0][None].copy())
    assert img.dtype == torch.uint8 and tuple(img.shape) == (1, SIZE[1], SIZE[0], 3)
    with torch.no_grad():
        prob, mask = wrapper(img)
        x = img.permute(0, 3, 1, 2).float() / 255.0
        x = (x - torch.tensor(card.mean).view(1, 3, 1, 1)) / torch.tensor(card.std).view(1, 3, 1, 1)
        expected = torch.sigmoid(model(x))
    assert prob.shape == (1, 1, SIZE[1], SIZE[0]) and prob.dtype == torch.float32
    assert mask.shape == prob.shape and mask.dtype == torch.uint8
    torch.testing.assert_close(prob, expected)
    assert set(torch.unique(mask).tolist()) <= {0, 255}
    assert torch.equal(mask == 255, prob >= card.threshold)


def test_export_parity_and_outputs(exported):
    model, card, result = exported
    assert result.path.is_file() and result.bytes == result.path.stat().st_size
    assert result.parity.passed and result.parity.iou >= 0.99
    assert result.parity.max_abs_diff < 1e-4
    assert result.details["opset"] == 17
    assert result.details["exporter"] in ("legacy", "dynamo")
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.type == "tensor(uint8)" and inp.shape == [1, SIZE[1], SIZE[0], 3]
    assert [o.name for o in session.get_outputs()] == ["probability", "mask"]
    # a fresh image, not one of the parity set, also agrees with PyTorch
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (1, SIZE[1], SIZE[0], 3), dtype=np.uint8)
    prob, mask = session.run(None, {"image": img})
    ref_prob, ref_mask = torch_runner(make_wrapper(model, card))(img)
    assert prob.dtype == np.float32 and mask.dtype == np.uint8
    np.testing.assert_allclose(prob, ref_prob, atol=1e-5)
    assert prob.min() >= 0.0 and prob.max() <= 1.0


def test_metadata_round_trip(exported):
    _, card, result = exported
    meta = read_onnx_metadata(result.path)
    assert meta["arch"] == card.arch
    assert meta["input_size"] == f"{SIZE[0]}x{SIZE[1]}"
    assert (int(meta["input_width"]), int(meta["input_height"])) == SIZE
    assert float(meta["threshold"]) == card.threshold
    assert json.loads(meta["labels"]) == list(card.labels)
    assert meta["version"] == card.version
    back = ModelCard.from_dict(json.loads(meta["model_card"]))
    assert back.to_dict() == card.to_dict()
    # ONNX Runtime sees the same metadata (this is what the torch-free runtime reads)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["arch"] == card.arch


def test_parity_failure_raises_and_leaves_no_file(tmp_path, monkeypatch):
    model, card = _student()
    real_run = ort.InferenceSession.run

    def corrupted(self, output_names, feeds, *args, **kwargs):
        prob, mask = real_run(self, output_names, feeds, *args, **kwargs)
        return [1.0 - prob, 255 - mask]  # an exporter bug that inverts the mask

    monkeypatch.setattr(ort.InferenceSession, "run", corrupted)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ModelError, match="parity check failed"):
        export_onnx(model, card, out)
    assert not out.exists()
    assert not any(p.name.endswith(".check") for p in tmp_path.iterdir())


def test_check_parity_reports_iou_and_difference():
    images = parity_images(SIZE, 2)

    def ref(batch):
        p = batch[..., :1].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return p, np.where(p >= 0.5, 255, 0).astype(np.uint8)

    def near(batch):
        p, m = ref(batch)
        return p + 0.01, m

    report = check_parity(ref, near, images)
    assert report.iou == 1.0 and report.n_images == 2
    assert report.max_abs_diff == pytest.approx(0.01, abs=1e-6)

    def off(batch):
        p, m = ref(batch)
        m = m.copy()
        m[..., : m.shape[-1] // 2] = 0  # loses the left half of the mask
        return p, m

    with pytest.raises(ModelError, match="below 0.99"):
        check_parity(ref, off, images)


def test_dynamic_size_export_runs_at_other_sizes(tmp_path):
    torch.manual_seed(1)
    model = _TinyNet().eval()
    card = ModelCard(arch="_test_tiny_export", input_size=SIZE)
    result = export_onnx(model, card, tmp_path, dynamic_size=True)
    assert result.path == tmp_path / "model.onnx"
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    img = np.random.default_rng(3).integers(0, 256, (1, 40, 72, 3), dtype=np.uint8)
    prob, mask = session.run(None, {"image": img})
    assert prob.shape == (1, 1, 40, 72) and mask.shape == (1, 1, 40, 72)
    ref_prob, _ = torch_runner(make_wrapper(model, card))(img)
    np.testing.assert_allclose(prob, ref_prob, atol=1e-5)


def test_dynamo_exporter_also_passes_parity(tmp_path):
    torch.manual_seed(2)
    model = _TinyNet().eval()
    card = ModelCard(arch="_test_tiny_export", input_size=SIZE)
    result = export_onnx(model, card, tmp_path / "d.onnx", exporter="dynamo", opset=18)
    assert result.details["exporter"] == "dynamo"
    assert result.parity.iou >= 0.99
    assert read_onnx_metadata(result.path)["arch"] == "_test_tiny_export"


def test_bad_options_raise_model_error(tmp_path):
    model, card = _student()
    with pytest.raises(ModelError, match="opset"):
        export_onnx(model, card, tmp_path / "x.onnx", opset=11)
    with pytest.raises(ModelError, match="exporter"):
        export_onnx(model, card, tmp_path / "x.onnx", exporter="magic")
