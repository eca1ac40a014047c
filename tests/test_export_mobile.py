"""Mobile export: Core ML (spec on Linux), ExecuTorch, TorchScript, ONNX fp16/int8/int8w, `okra benchmark`."""

from __future__ import annotations

import dataclasses
import json
import platform

import numpy as np
import onnx
import pytest
import torch

from okrainsight import export as ex
from okrainsight.checkpoint import ModelCard, save_checkpoint
from okrainsight.cli import main
from okrainsight.errors import ModelError
from okrainsight.export import (
    check_parity,
    export_model,
    make_coreml_wrapper,
    make_wrapper,
    parity_images,
    read_executorch_metadata,
    read_onnx_metadata,
    read_torchscript_metadata,
    torch_runner,
    validate_coreml_spec,
)
from okrainsight.imageio import write_image
from okrainsight.students import create_student

torch.set_num_threads(1)

SIZE = (64, 48)  # (width, height)


def _student() -> tuple[torch.nn.Module, ModelCard]:
    torch.manual_seed(0)
    kwargs = {"width": 0.5, "inter_channels": 16}
    model = create_student("okra_lraspp_small", **kwargs).eval()
    card = ModelCard(
        arch="okra_lraspp_small",
        arch_kwargs=kwargs,
        input_size=SIZE,
        threshold=0.45,
        name="tiny-mobile-test",
        metrics={"val_iou": 0.5},
    )
    return model, card


@pytest.fixture(scope="module")
def student():
    return _student()


@pytest.fixture(scope="module")
def coreml_export(student, tmp_path_factory):
    model, card = student
    out = tmp_path_factory.mktemp("coreml") / "tiny.mlpackage"
    return export_model(model, card, "coreml", out, fp16=True)


@pytest.fixture(scope="module")
def executorch_export(student, tmp_path_factory):
    model, card = student
    return export_model(model, card, "executorch", tmp_path_factory.mktemp("et") / "tiny.pte")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    for i, img in enumerate(parity_images((80, 60), 5, seed=77)):
        write_image(d / f"c{i}.png", img)
    return d


def test_coreml_wrapper_matches_uint8_wrapper(student):
    model, card = student
    img = parity_images(SIZE, 1)[0]
    with torch.no_grad():
        p_ref, m_ref = make_wrapper(model, card)(torch.from_numpy(img[None].copy()))
        chw = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))
        p_cm, m_cm = make_coreml_wrapper(model, card)(chw)
    assert torch.allclose(p_ref, p_cm, atol=1e-6)
    assert torch.equal(m_ref.float(), m_cm)


def test_coreml_spec_image_input_outputs_and_metadata(coreml_export, student):
    import coremltools as ct

    _, card = student
    res = coreml_export
    assert res.path.suffix == ".mlpackage" and res.path.is_dir() and res.bytes > 0
    spec = ct.utils.load_spec(str(res.path))
    assert spec.WhichOneof("Type") == "mlProgram"
    (inp,) = spec.description.input
    assert inp.name == "image" and inp.type.WhichOneof("Type") == "imageType"
    assert (inp.type.imageType.width, inp.type.imageType.height) == SIZE
    assert ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(inp.type.imageType.colorSpace) == "RGB"
    outs = {o.name: tuple(o.type.multiArrayType.shape) for o in spec.description.output}
    assert outs == {"probability": (1, 1, SIZE[1], SIZE[0]), "mask": (1, 1, SIZE[1], SIZE[0])}
    meta = spec.description.metadata
    assert meta.author == "OkraInsight" and meta.versionString == card.version and meta.shortDescription
    user = dict(meta.userDefined)
    assert user["threshold"] == "0.45" and user["input_size"] == "64x48"
    assert ModelCard.from_dict(json.loads(user["model_card"])).name == "tiny-mobile-test"
    assert res.details["precision"] == "fp16"
    # the validator itself rejects a card of another size
    validate_coreml_spec(res.path, card)
    other = dataclasses.replace(card, input_size=(32, 32))
    with pytest.raises(ModelError, match="expected RGB 32x32"):
        validate_coreml_spec(res.path, other)
    if platform.system() != "Darwin":
        assert res.parity.n_images == 0
    else:  # pragma: no cover - macOS only
        assert res.parity.iou >= 0.99


def test_executorch_parity_and_metadata(executorch_export, student):
    _, card = student
    res = executorch_export
    assert res.path.suffix == ".pte" and res.path.is_file()
    assert res.parity.n_images == 4 and res.parity.iou >= 0.99
    assert res.parity.max_abs_diff < 1e-4
    # an independent run of the .pte against PyTorch on other images
    model, _ = student
    rep = check_parity(
        torch_runner(make_wrapper(model, card)),
        ex.executorch_runner(res.path),
        parity_images(SIZE, 3, seed=99),
    )
    assert rep.iou >= 0.99
    meta = read_executorch_metadata(res.path)
    assert meta["threshold"] == "0.45" and meta["input_width"] == "64" and meta["input_height"] == "48"
    assert json.loads(meta["model_card"])["arch"] == "okra_lraspp_small"


def test_torchscript_parity_and_extra_files(student, tmp_path):
    model, card = student
    res = export_model(model, card, "torchscript", tmp_path)
    assert res.path == tmp_path / "model.pt"
    assert res.parity.iou >= 0.99 and res.parity.max_abs_diff < 1e-5
    meta = read_torchscript_metadata(res.path)
    assert meta["arch"] == "okra_lraspp_small" and meta["labels"] == '["background", "okra"]'
    module = torch.jit.load(str(res.path))
    prob, mask = module(torch.from_numpy(parity_images(SIZE, 1)[0][None].copy()))
    assert prob.shape == (1, 1, 48, 64) and mask.dtype == torch.uint8


def test_onnx_fp32_and_size_override_record_metadata(student, tmp_path):
    model, card = student
    res = export_model(model, card, "onnx", tmp_path / "m.onnx", size=(96, 64))
    assert res.parity.iou >= 0.99
    meta = read_onnx_metadata(res.path)
    assert meta["input_size"] == "96x64"
    dims = [d.dim_value for d in onnx.load(str(res.path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 64, 96, 3]


def test_onnx_fp16_reports_drop(student, tmp_path):
    model, card = student
    res = export_model(model, card, "onnx", tmp_path, fp16=True)
    assert res.path.name == "model.fp16.onnx"
    d = res.details
    assert d["precision"] == "fp16" and d["drop_points"] == pytest.approx((d["iou_fp32"] - d["iou"]) * 100)
    assert d["drop_points"] <= 1.0
    assert read_onnx_metadata(res.path)["precision"] == "fp16"
    # fp16 weights: noticeably smaller than the fp32 file the details describe
    fp32 = export_model(model, card, "onnx", tmp_path / "fp32.onnx")
    assert res.bytes < 0.7 * fp32.bytes
    assert res.parity.max_abs_diff < 1e-2


def test_onnx_int8_runs_and_reports_drop(student, calib_dir, tmp_path):
    model, card = student
    res = export_model(model, card, "onnx", tmp_path, int8_calib=calib_dir, max_drop_points=100.0)
    d = res.details
    assert res.path.name == "model.int8.onnx" and d["calibration_images"] == 5
    assert d["drop_points"] == pytest.approx((d["iou_fp32"] - d["iou"]) * 100)
    proto = onnx.load(str(res.path))
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    assert read_onnx_metadata(res.path)["precision"] == "int8"


def test_onnx_int8_weights_shrink_the_file_and_keep_float_compute(student, tmp_path):
    """``--int8-weights``: the convolution weights are stored as int8 with one scale per output
    channel and turned back into float32 by Cast and Mul nodes, which ONNX Runtime folds at load;
    the file is much smaller, the IoU drop is measured, and every weight is within half a
    quantisation step of the fp32 file's."""
    import onnxruntime as ort
    from onnx import numpy_helper

    model, card = student
    res = export_model(model, card, "onnx", tmp_path, int8_weights=True)
    fp32 = export_model(model, card, "onnx", tmp_path / "fp32.onnx")
    d = res.details
    assert res.path.name == "model.int8w.onnx" and d["precision"] == "int8w"
    assert d["calibration_images"] == 0 and d["drop_points"] <= 1.0
    assert read_onnx_metadata(res.path)["precision"] == "int8w"
    assert res.bytes < 0.6 * fp32.bytes
    small, full = onnx.load(str(res.path)), onnx.load(str(fp32.path))
    ops = [n.op_type for n in small.graph.node]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    inits = {i.name: numpy_helper.to_array(i) for i in small.graph.initializer}
    full_inits = {i.name: numpy_helper.to_array(i) for i in full.graph.initializer}
    converted = [n for n in full_inits if f"{n}_int8" in inits]
    assert len(converted) >= 10
    for name in converted:
        q, scale = inits[f"{name}_int8"], inits[f"{name}_scale"]
        assert q.dtype == np.int8 and scale.shape == (q.shape[0], 1, 1, 1)
        err = np.abs(q.astype(np.float32) * scale - full_inits[name])
        assert (err <= scale / 2 + 1e-7).all()  # half a step of each channel's own scale
        assert name not in inits  # the float copy is gone
    # after ONNX Runtime's graph optimisations the casts are folded away
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # constant folding
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(res.path), opts, providers=["CPUExecutionProvider"])
    optimised = [n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    assert optimised.count("Cast") <= ops.count("Cast") - len(converted)
    with pytest.raises(ModelError, match="one of --fp16, --int8 and --int8-weights"):
        export_model(model, card, "onnx", tmp_path / "o", fp16=True, int8_weights=True)
    with pytest.raises(ModelError, match="ONNX only"):
        export_model(model, card, "torchscript", tmp_path / "o", int8_weights=True)


def test_quantise_conv_weights_leaves_shared_and_input_weights_alone():
    """Only initializers that Conv nodes alone read as weights are converted; a weight another op
    reads too, or one the caller may feed as a graph input, stays float32; new names never clash
    with existing ones; an all-zero output channel quantises to zeros; the graph stays valid and
    computes what the float graph computes, to within the weights' rounding."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    w1[2] = 0.0
    w2 = rng.normal(size=(4, 4, 1, 1)).astype(np.float32)
    w3 = rng.normal(size=(4, 4, 1, 1)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(w3, "w3"),
        numpy_helper.from_array(np.zeros(1, np.float32), "w1_int8"),  # a name the converter would pick
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w2"], ["b"]),
        helper.make_node("Conv", ["b", "w3"], ["c"]),
        helper.make_node("ReduceSum", ["w2"], ["w2sum"], keepdims=0),  # w2 is read by another op
        helper.make_node("Add", ["c", "w1_int8"], ["y"]),
    ]
    info = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(
        nodes,
        "g",
        [info("x", [1, 3, 8, 8]), info("w3", [4, 4, 1, 1])],  # w3: a graph input with a default
        [info("y", [1, 4, 8, 8]), info("w2sum", [])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = proto.SerializeToString()
    assert ex.quantise_conv_weights(proto, min_elements=1) == 1
    onnx.checker.check_model(proto)
    names = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert "w1" not in names and "w2" in names and "w3" in names and names["w1_int8"].dtype == np.float32
    q = names["w1_int8_1"]
    assert q.dtype == np.int8 and not q[2].any()
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)

    def run(model_bytes: bytes) -> np.ndarray:
        sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        return sess.run(["y"], {"x": x})[0]

    assert np.allclose(run(proto.SerializeToString()), run(before), atol=0.05 * np.abs(run(before)).max())


def test_int8_without_images_is_a_clear_error(student, tmp_path):
    model, card = student
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no images for int8 calibration"):
        export_model(model, card, "onnx", tmp_path / "o", int8_calib=empty)
    with pytest.raises(ModelError, match="ONNX only"):
        export_model(model, card, "torchscript", tmp_path / "o", int8_calib=empty)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_cli_export_writes_file_and_reports_parity(student, tmp_path, capsys):
    model, card = student
    run = save_checkpoint(tmp_path / "run", model, card)
    out = tmp_path / "dist" / "okra.pt"
    code, stdout, _ = _run_cli(["export", str(run), "--format", "torchscript", "--out", str(out)], capsys)
    assert code == 0 and out.is_file()
    assert "parity IoU 1.0000" in stdout


def test_cli_failed_parity_exits_nonzero_and_leaves_no_file(student, tmp_path, capsys, monkeypatch):
    model, card = student
    run = save_checkpoint(tmp_path / "run", model, card)
    real = ex.torchscript_runner

    def inverted(path):
        inner = real(path)

        def run_(batch):
            prob, mask = inner(batch)
            return 1.0 - prob, 255 - mask

        return run_

    monkeypatch.setattr(ex, "torchscript_runner", inverted)
    out = tmp_path / "dist" / "okra.pt"
    code, _, err = _run_cli(["export", str(run), "--format", "torchscript", "--out", str(out)], capsys)
    assert code != 0
    assert "parity check failed" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert list((tmp_path / "dist").iterdir()) == []


def test_cli_export_unknown_builtin_is_one_line_error(tmp_path, capsys):
    code, _, err = _run_cli(
        ["export", "no_such_model_zz", "--format", "onnx", "--out", str(tmp_path / "x.onnx")], capsys
    )
    assert code == 2 and "no built-in model named 'no_such_model_zz'" in err
    assert not (tmp_path / "x.onnx").exists()


def test_cli_benchmark_small(tmp_path, capsys):
    out = tmp_path / "bench"
    code, stdout, _ = _run_cli(
        [
            "benchmark",
            "--models",
            "okra_lraspp_small",
            "--formats",
            "onnx,torchscript",
            "--size",
            "64",
            "--runs",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0
    md = (out / "benchmark.md").read_text()
    assert "| okra_lraspp_small | okrainsight | no | onnx |" in md
    assert "| okra_lraspp_small | okrainsight | no | torchscript |" in md
    data = json.loads((out / "benchmark.json").read_text())
    rows = data["rows"]
    assert [r["format"] for r in rows] == ["onnx", "torchscript"]
    for r in rows:
        assert r["error"] is None and r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"]
        assert r["parameters"] == sum(p.numel() for p in create_student("okra_lraspp_small").parameters())
        assert r["sam_ratio"] == pytest.approx(2_564_550_879 / r["bytes"])
        assert 0.0 <= r["iou"] <= 1.0
    assert data["conditions"]["threads"] == 2 and data["conditions"]["size"] == [64, 64]
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "okra_lraspp_small" in stdout
