"""Tiny hand-set segmentation models shared by several test files (not a test module itself).

Both say "okra" where a pixel is saturated green, so tests can draw green pods on a pale
background and know the right answer without training anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from okrainsight.checkpoint import ModelCard, save_card


def green_detector_dir(folder: Path, *, arch: str, size: tuple[int, int], offset: float = 0.15) -> Path:
    """Export a 1x1-conv 'student' with hand-set weights to ``folder`` (``model.onnx`` + card).

    logit = 30 * (G - (R + B) / 2 - ``offset``) on 0..1 pixels, written in the card's normalised
    space: green pods -> ~1, near-white background -> ~0. ``size`` is the card's (width, height).
    """
    import torch
    from torch import nn

    from okrainsight.export import export_onnx

    torch.set_num_threads(1)
    card = ModelCard(arch=arch, input_size=size, name="green-detector")
    conv = nn.Conv2d(3, 1, 1)
    k, coef = 30.0, (-0.5, 1.0, -0.5)
    with torch.no_grad():
        for c in range(3):
            conv.weight[0, c, 0, 0] = k * coef[c] * card.std[c]
        conv.bias[0] = k * (sum(coef[c] * card.mean[c] for c in range(3)) - offset)
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(conv.eval(), card, folder / "model.onnx")
    save_card(folder, card)
    return folder


def greenness_onnx_dir(folder: Path, size: tuple[int, int]) -> Path:
    """Write a raw ONNX model folder (no torch): uint8 ``(1, H, W, 3)`` image in, probability
    ``(1, H, W, 1)`` = sigmoid(-0.1 R + 0.2 G - 0.1 B - 4) out. ``size`` is (width, height)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, h = size
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["x", "w"], ["z"]),
            helper.make_node("Add", ["z", "b"], ["zb"]),
            helper.make_node("Sigmoid", ["zb"], ["probability"]),
        ],
        "greenness",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, h, w, 3])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, h, w, 1])],
        initializer=[
            numpy_helper.from_array(np.array([[-0.1], [0.2], [-0.1]], np.float32), "w"),
            numpy_helper.from_array(np.array([-4.0], np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    save_card(folder, ModelCard(arch="greenness", input_size=(w, h), threshold=0.5))
    return folder
