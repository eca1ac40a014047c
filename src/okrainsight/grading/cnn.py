"""The optional small CNN on the masked pod crop (``okra grade train --cnn``).

Input preparation is numpy/OpenCV (:func:`cnn_input`), so the torch-free runtime feeds the
exported ``cnn.onnx``; training and export need torch (``train`` extra).

* input: the pod's crop with the background zeroed, rotated so its principal axis is
  horizontal, tightly cropped and resized to :data:`CNN_SIZE` ``(64, 32)`` (width, height);
  float32 ``(3, 32, 64)`` RGB in 0..1;
* network: three 3x3 convolution + ReLU + 2x2 max-pool blocks (16, 32, 32 channels), global
  average pooling, one linear unit, sigmoid; about 14k parameters;
* files: ``cnn.safetensors`` (weights) and ``cnn.onnx`` (input ``crop`` float32 ``(N, 3, 32, 64)``,
  output ``tender_probability`` float32 ``(N, 1)``).

Its probability is averaged with the feature model's when a grader folder holds ``cnn.onnx``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.errors import MissingDependencyError, ModelError

log = logging.getLogger(__name__)

#: ``(width, height)`` of the CNN's input.
CNN_SIZE = (64, 32)
CNN_WEIGHTS = "cnn.safetensors"
CNN_ONNX = "cnn.onnx"


def cnn_input(image: np.ndarray, crop_mask: np.ndarray, bbox: list[int] | tuple[int, ...]) -> np.ndarray:
    """The CNN's input for one pod: float32 ``(3, H, W)`` with ``(W, H)`` = :data:`CNN_SIZE`, 0..1.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        crop_mask: the pod's bool mask inside ``bbox``.
        bbox: ``[x0, y0, x1, y1]`` (x1, y1 exclusive).
    """
    x0, y0, x1, y1 = (int(v) for v in bbox)
    m = np.asarray(crop_mask) > 0
    crop = image[y0:y1, x0:x1].astype(np.float32) / 255.0 * m[..., None]
    ys, xs = np.nonzero(m)
    if len(ys) < 2:
        return np.zeros((3, CNN_SIZE[1], CNN_SIZE[0]), np.float32)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    c = pts.mean(0)
    vals, vecs = np.linalg.eigh(np.cov((pts - c).T))
    t = vecs[:, int(np.argmax(vals))]
    angle = float(np.degrees(np.arctan2(t[1], t[0])))
    h, w = m.shape
    side = int(np.ceil(np.hypot(h, w))) + 2
    rot = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), angle, 1.0)
    rot[:, 2] += (side / 2 - c[0], side / 2 - c[1])
    big = cv2.warpAffine(crop, rot, (side, side), flags=cv2.INTER_LINEAR)
    bm = cv2.warpAffine(m.astype(np.uint8), rot, (side, side), flags=cv2.INTER_NEAREST)
    ys, xs = np.nonzero(bm)
    if len(ys) == 0:
        return np.zeros((3, CNN_SIZE[1], CNN_SIZE[0]), np.float32)
    tight = big[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    out = cv2.resize(tight, CNN_SIZE, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(out.transpose(2, 0, 1).astype(np.float32))


def build_cnn() -> Any:
    """The network (an ``nn.Module``: ``(N, 3, 32, 64)`` float 0..1 -> ``(N, 1)`` probability)."""
    try:
        import torch
        from torch import nn
    except ImportError as exc:
        raise MissingDependencyError("torch", "train") from exc

    class PodCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 3
            for c_out in (16, 32, 32):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                c_in = c_out
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(c_in, 1)

        def logits(self, x: torch.Tensor) -> torch.Tensor:
            z = self.features((x - 0.5) / 0.25)
            return self.head(z.mean(dim=(2, 3)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.logits(x))

    return PodCNN()


def train_cnn(
    samples: list[Any], out: str | os.PathLike[str], *, epochs: int = 30, seed: int = 0, lr: float = 3e-3
) -> dict[str, Any]:
    """Train the CNN on :class:`~okrainsight.grading.data.PodSample` objects (with ``crop`` =
    :func:`cnn_input`) and write ``cnn.safetensors`` and ``cnn.onnx`` into ``out``.

    Returns:
        Card information: input size, epochs, parameters, final training loss.
    """
    X = np.stack([s.crop for s in samples])
    y = np.array([float(s.photo.tender) for s in samples])
    return fit_cnn(X, y, out, epochs=epochs, seed=seed, lr=lr)


def fit_cnn(
    X: np.ndarray,
    y: np.ndarray,
    out: str | os.PathLike[str],
    *,
    epochs: int = 30,
    seed: int = 0,
    lr: float = 3e-3,
) -> dict[str, Any]:
    """Train the CNN on crops ``X`` ``(N, 3, 32, 64)`` float 0..1 (:func:`cnn_input`) with labels
    ``y`` ``(N,)`` (1 = tender) and write ``cnn.safetensors`` and ``cnn.onnx`` into ``out``.

    Returns:
        Card information: input size, epochs, parameters, final training loss.
    """
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as exc:
        raise MissingDependencyError("torch", "train") from exc

    X = np.asarray(X, np.float32)
    y = np.asarray(y, np.float32)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)[:, None]
    loss_v = float("nan")
    net.train()
    for _ in range(int(epochs)):
        order = rng.permutation(len(X))
        for i in range(0, len(order), 32):
            idx = torch.from_numpy(order[i : i + 32])
            xb = xt[idx]
            if rng.random() < 0.5:
                xb = xb.flip(3)
            if rng.random() < 0.5:
                xb = xb.flip(2)
            loss = loss_fn(net.logits(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
    net.eval()
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(outp / CNN_WEIGHTS))
    export_cnn_onnx(net, outp / CNN_ONNX)
    return {
        "input_size": list(CNN_SIZE),
        "epochs": int(epochs),
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "train_loss": loss_v,
        "combine": "mean with the feature model",
    }


def export_cnn_onnx(net: Any, path: str | os.PathLike[str]) -> Path:
    """Export the CNN (probability output) to ONNX with a dynamic batch axis."""
    import torch

    from okrainsight.imageio import atomic_write_bytes

    dummy = torch.zeros(1, 3, CNN_SIZE[1], CNN_SIZE[0])
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            net.eval(),
            (dummy,),
            str(tmp),
            input_names=["crop"],
            output_names=["tender_probability"],
            dynamic_axes={"crop": {0: "N"}, "tender_probability": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink(missing_ok=True)
    return Path(path)


def load_cnn_torch(folder: str | os.PathLike[str]) -> Any:
    """The CNN with its weights from ``folder/cnn.safetensors`` (needs torch)."""
    from safetensors.torch import load_file

    net = build_cnn()
    net.load_state_dict(load_file(str(Path(folder) / CNN_WEIGHTS)))
    return net.eval()


class CnnRunner:
    """``cnn.onnx`` in ONNX Runtime (torch-free): ``predict(batch (N, 3, 32, 64)) -> (N,)``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._sess = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"{path}: ONNX Runtime cannot load the grader CNN ({exc})") from exc
        self.path = Path(path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        (p,) = self._sess.run(["tender_probability"], {"crop": np.asarray(batch, np.float32)})
        return np.asarray(p, np.float64).reshape(-1)


__all__ = [
    "CNN_ONNX",
    "CNN_SIZE",
    "CNN_WEIGHTS",
    "CnnRunner",
    "build_cnn",
    "cnn_input",
    "export_cnn_onnx",
    "fit_cnn",
    "load_cnn_torch",
    "train_cnn",
]
