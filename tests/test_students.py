"""Contract tests over every registered student (in the manner of torchvision's and timm's).

Large models (u2net, deeplab) run at 64x64 with small batches and one thread, so the
whole file stays fast on a 2-core machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from okrainsight.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from okrainsight.errors import ModelError
from okrainsight.students import (
    DEFAULT_STUDENT,
    create_student,
    get_builder,
    list_students,
    register_student,
)
from okrainsight.students import registry as registry_module

STUDENTS = list_students()
DEEP_SUPERVISED = ("u2net", "u2netp")
FAST = ("okra_lraspp_small", "okra_unet_tiny")
SIZES = [(64, 64), (67, 45)]  # (H, W): square and odd


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_student(name)


def test_registry_lists_every_architecture() -> None:
    expected = {"deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large", "u2net", "u2netp", *FAST}
    assert expected <= set(STUDENTS)
    assert sorted(STUDENTS) == STUDENTS
    assert DEFAULT_STUDENT in STUDENTS


@pytest.mark.parametrize("name", STUDENTS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_forward_gives_finite_logits_at_input_size(name: str, size: tuple[int, int]) -> None:
    model = _build(name).eval()
    batch = 2 if name in FAST else 1
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert isinstance(y, torch.Tensor)
    assert y.shape == (batch, 1, *size)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.std() > 0  # not a constant map


@pytest.mark.parametrize("name", STUDENTS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_backward_reaches_every_parameter(name: str, size: tuple[int, int]) -> None:
    model = _build(name).train()
    x = torch.randn(2, 3, *size)  # batch 2: BatchNorm after global pooling needs > 1 value
    target = (torch.rand(2, 1, *size) > 0.5).float()
    outputs = model.forward_train(x) if hasattr(model, "forward_train") else [model(x)]
    loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(o, target) for o in outputs)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", DEEP_SUPERVISED)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_forward_train_returns_fused_then_six_sides(name: str, size: tuple[int, int]) -> None:
    model = _build(name).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        outs = model.forward_train(x)
        fused = model(x)
    assert isinstance(outs, list) and len(outs) == 7
    for o in outs:
        assert o.shape == (1, 1, *size)
        assert torch.isfinite(o).all()
    torch.testing.assert_close(outs[0], fused)
    # the sides differ from each other (each comes from its own stage)
    assert not torch.allclose(outs[1], outs[6])


@pytest.mark.parametrize(("name", "published"), [("u2net", 44.0e6), ("u2netp", 1.13e6)])
def test_u2net_parameter_counts_match_publication(name: str, published: float) -> None:
    n = sum(p.numel() for p in create_student(name).parameters())
    assert abs(n - published) / published < 0.02, n


@pytest.mark.parametrize("name", STUDENTS)
def test_checkpoint_round_trip_gives_identical_outputs(name: str, tmp_path: Path) -> None:
    model = _build(name, seed=1)
    with torch.no_grad():  # move BatchNorm running statistics away from their defaults
        model.train()(torch.randn(2, 3, 64, 64))
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    save_checkpoint(tmp_path / "m", model, ModelCard(arch=name))
    loaded, card = load_checkpoint(tmp_path / "m")
    assert card.arch == name
    assert not loaded.training
    with torch.no_grad():
        after = loaded(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("name", FAST)
def test_fast_students_export_to_onnx_opset17_with_parity(name: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = _build(name).eval()
    x = torch.randn(1, 3, 96, 128)
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=False, input_names=["x"])
    assert onnx.load(str(path)).opset_import[0].version == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "params_grow"),
    [({"width": 0.5}, False), ({"width": 1.0}, True)],
)
def test_fast_student_width_changes_size(kwargs: dict[str, float], params_grow: bool) -> None:
    base = sum(p.numel() for p in create_student("okra_unet_tiny", width=0.75).parameters())
    n = sum(p.numel() for p in create_student("okra_unet_tiny", **kwargs).parameters())
    assert (n > base) == params_grow


# --- registry --------------------------------------------------------------------------------------

_PROBE = "_test_students_probe"
if _PROBE not in registry_module._REGISTRY:  # guarded: re-import must not re-register

    @register_student(_PROBE)
    def _probe(*, width: float = 0.25, depth: int = 2) -> dict[str, float]:
        return {"width": width, "depth": depth}


def test_registry_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_student("u2netp")(lambda: None)
    assert get_builder("u2netp").__name__ == "u2netp"  # the original stays


def test_unknown_name_is_a_model_error_listing_choices() -> None:
    with pytest.raises(ModelError) as info:
        create_student("no_such_net")
    msg = str(info.value)
    assert "no_such_net" in msg
    for name in ("u2netp", "okra_unet_tiny", "deeplabv3_mobilenet_v3_large"):
        assert name in msg


def test_create_student_drops_none_kwargs() -> None:
    assert create_student(_PROBE, width=None, depth=3) == {"width": 0.25, "depth": 3}
    assert create_student(_PROBE, width=0.5, depth=None) == {"width": 0.5, "depth": 2}


# --- optional ImageNet backbone weights from a local file ---------------------------------------------


def _mobilenet_state(kind: str) -> dict[str, torch.Tensor]:
    from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

    torch.manual_seed(3)
    net = (mobilenet_v3_large if kind == "large" else mobilenet_v3_small)(weights=None)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_backbone_weights_load_from_local_file(fmt: str, tmp_path: Path) -> None:
    state = _mobilenet_state("large")
    path = tmp_path / f"mnv3l.{fmt}"
    if fmt == "pt":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    model = create_student("deeplabv3_mobilenet_v3_large", backbone_weights=str(path))
    torch.testing.assert_close(model.backbone.state_dict()["0.0.weight"], state["features.0.0.weight"])
    torch.testing.assert_close(
        model.backbone.state_dict()["16.1.running_var"], state["features.16.1.running_var"]
    )


def test_small_backbone_weights_fit_okra_lraspp_small_at_full_width(tmp_path: Path) -> None:
    state = _mobilenet_state("small")
    path = tmp_path / "mnv3s.pt"
    torch.save(state, path)
    model = create_student("okra_lraspp_small", width=1.0, backbone_weights=str(path))
    torch.testing.assert_close(
        model.backbone.state_dict()["1.block.0.0.weight"], state["features.1.block.0.0.weight"]
    )
    with pytest.raises(ModelError, match="do not fit"):
        create_student("okra_lraspp_small", width=0.5, backbone_weights=str(path))


@pytest.mark.parametrize("name", ["deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
def test_backbone_weights_errors_name_the_file(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(ModelError, match="nope.pt"):
        create_student(name, backbone_weights=str(missing))
    small = tmp_path / "small.pt"
    torch.save(_mobilenet_state("small"), small)
    with pytest.raises(ModelError, match=r"small\.pt.*do not fit"):
        create_student(name, backbone_weights=str(small))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match="junk.safetensors"):
        create_student(name, backbone_weights=str(junk))
