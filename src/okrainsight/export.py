"""Export a student with its pre- and post-processing inside, and prove numeric parity.

Every format exports the same :class:`ExportWrapper`: it takes the camera's pixels
as they come, ``(1, H, W, 3)`` uint8 RGB (NHWC, 0..255, what a camera frame or an
HTML canvas gives) at the model's input size, and returns

* ``probability``: ``(1, 1, H, W)`` float32 in 0..1 (sigmoid of the student's logits);
* ``mask``: ``(1, 1, H, W)`` uint8, 255 where ``probability >= card.threshold``, else 0.

Normalisation (``(pixel / 255 - mean) / std`` with the card's mean/std) and the
sigmoid live inside the model, so an app never normalises twice or forgets to. The
wrapper has no data-dependent control flow, so tracing, ``torch.export`` and the
mobile converters all see the same graph.

Right after writing a file, each exporter runs it in its own runtime on a fixed set
of test images (:func:`parity_images`: rendered scenes when the renderer is
installed, otherwise deterministic synthetic ones) and compares with the PyTorch
wrapper (:func:`check_parity`): the mask IoU over the set must be at least 0.99 and
the largest absolute probability difference is reported. A failed check raises
:class:`~okrainsight.errors.ModelError`. Later formats (Core ML, ExecuTorch, int8)
plug into the same wrapper and the same :func:`check_parity` with their own runner.

torch is imported inside functions only (importing this module is cheap).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from okrainsight.checkpoint import ONNX_FILE, ModelCard
from okrainsight.errors import MissingDependencyError, ModelError
from okrainsight.imageio import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: Input and output names of every exported model.
INPUT_NAME = "image"
OUTPUT_NAMES = ("probability", "mask")
#: Minimum mask IoU between an exported model and the PyTorch wrapper.
PARITY_MIN_IOU = 0.99
#: Prefix-free keys written into ONNX ``metadata_props`` (all values are strings).
METADATA_KEYS = (
    "arch",
    "name",
    "version",
    "input_size",
    "input_width",
    "input_height",
    "input_format",
    "threshold",
    "labels",
    "mean",
    "std",
    "outputs",
    "model_card",
)
INPUT_FORMAT = "uint8 RGB NHWC (1, H, W, 3), values 0..255; normalisation and sigmoid are inside"


@functools.cache
def _wrapper_class() -> type:
    import torch
    from torch import nn

    class ExportWrapper(nn.Module):
        """uint8 ``(1, H, W, 3)`` RGB -> (``probability`` (1, 1, H, W) float32 0..1, ``mask`` uint8 0/255)."""

        def __init__(self, model: nn.Module, card: ModelCard) -> None:
            super().__init__()
            self.model = model
            mean = torch.tensor(card.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(card.std, dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)
            self.threshold = float(card.threshold)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
            x = (x - self.mean) / self.std
            out = self.model(x)
            if isinstance(out, dict):  # torchvision segmentation models (decided at trace time)
                out = out["out"]
            probability = torch.sigmoid(out)
            mask = (probability >= self.threshold).to(torch.uint8) * 255
            return probability, mask

    return ExportWrapper


def make_wrapper(model: Any, card: ModelCard) -> Any:
    """Build the export wrapper (an ``nn.Module``, in eval mode) around a student.

    Args:
        model: a student mapping normalised float ``(N, 3, H, W)`` to logits ``(N, 1, H, W)``
            (a torchvision-style ``{"out": logits}`` dict is accepted too).
        card: its model card (mean, std, threshold are baked in).

    Returns:
        ``nn.Module``; ``forward(image)`` with ``image`` ``(1, H, W, 3)`` uint8 RGB returns
        ``(probability (1, 1, H, W) float32 in 0..1, mask (1, 1, H, W) uint8 0/255)``.
    """
    return _wrapper_class()(model, card).eval()


def __getattr__(name: str) -> Any:
    """``okrainsight.export.ExportWrapper`` is the ``nn.Module`` class itself (built on first use,
    so importing this module does not import torch)."""
    if name == "ExportWrapper":
        return _wrapper_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------
# Test images for parity
# ----------------------------------------------------------------------------------


def _synthetic_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A deterministic stand-in scene: curved green pods on a textured background."""
    import cv2

    w, h = size
    base = rng.integers(60, 256, size=3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img += (rng.normal(0, 1, 3) * 20)[None, None, :] * (xx / max(w, 1))[:, :, None]
    img += rng.normal(0, 8, (h, w, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        length = rng.uniform(0.2, 0.6) * min(w, h)
        angle = rng.uniform(0, np.pi)
        bend = rng.uniform(-0.3, 0.3) * length
        t = np.linspace(-0.5, 0.5, 24)
        px = cx + t * length * np.cos(angle) - bend * (1 - 4 * t * t) * np.sin(angle)
        py = cy + t * length * np.sin(angle) + bend * (1 - 4 * t * t) * np.cos(angle)
        pts = np.stack([px, py], 1).round().astype(np.int32)
        colour = tuple(int(c) for c in (rng.integers(40, 110), rng.integers(120, 200), rng.integers(30, 90)))
        thick = max(2, int(length * rng.uniform(0.12, 0.2)))
        cv2.polylines(img, [pts], False, colour, thick, lineType=cv2.LINE_AA)
    return img


def parity_images(size: tuple[int, int], n: int = 4, *, seed: int = 1234) -> list[np.ndarray]:
    """A fixed set of test images for parity checks.

    Args:
        size: ``(width, height)`` of the images (the model's input size).
        n: how many images.
        seed: the set is a pure function of ``(size, n, seed)``.

    Returns:
        ``n`` arrays ``(H, W, 3)`` uint8 RGB: rendered scenes from :mod:`okrainsight.synth`
        when it is installed (including a no-okra scene), otherwise synthetic scenes.
    """
    try:
        from okrainsight.synth import render_scene
    except ImportError:
        render_scene = None
    images: list[np.ndarray] = []
    if render_scene is not None:
        kinds: list[str | None] = ["white", None, "negative", None]
        try:
            for i in range(n):
                scene = render_scene(seed + i, size=size, kind=kinds[i % len(kinds)])
                images.append(np.ascontiguousarray(scene.image, dtype=np.uint8))
            return images
        except Exception as exc:  # the renderer is optional here; never let it block an export
            log.warning("renderer failed (%s); using synthetic parity images", exc)
            images = []
    rng = np.random.default_rng(seed)
    return [_synthetic_image(rng, size) for _ in range(n)]


# ----------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------


@dataclass
class ParityReport:
    """Outcome of comparing an exported model with the PyTorch wrapper.

    Attributes:
        iou: mask IoU pooled over the whole set (intersection sum / union sum; 1.0 when both empty).
        min_image_iou: the worst single image's mask IoU.
        max_abs_diff: largest absolute probability difference over all pixels.
        n_images: images compared; size: their ``(width, height)``.
        passed: ``iou >= min_iou``.
    """

    iou: float
    min_image_iou: float
    max_abs_diff: float
    n_images: int
    size: tuple[int, int]
    min_iou: float = PARITY_MIN_IOU
    passed: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "iou": self.iou,
            "min_image_iou": self.min_image_iou,
            "max_abs_diff": self.max_abs_diff,
            "n_images": self.n_images,
            "size": list(self.size),
            "min_iou": self.min_iou,
            "passed": self.passed,
        }


Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def torch_runner(wrapper: Any) -> Runner:
    """Run the PyTorch wrapper on one ``(1, H, W, 3)`` uint8 batch -> (probability, mask) as numpy."""
    import torch

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            prob, mask = wrapper(torch.from_numpy(np.ascontiguousarray(batch)))
        return prob.numpy(), mask.numpy()

    return run


def onnx_runner(path: str | os.PathLike[str], *, threads: int = 1) -> Runner:
    """Run an exported ONNX file in ONNX Runtime (CPU) -> (probability, mask) as numpy."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{path}: ONNX Runtime cannot load the exported model ({exc})") from exc

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob, mask = session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(batch)})
        return np.asarray(prob), np.asarray(mask)

    return run


def check_parity(
    reference: Runner,
    candidate: Runner,
    images: Sequence[np.ndarray],
    *,
    min_iou: float = PARITY_MIN_IOU,
    what: str = "exported model",
) -> ParityReport:
    """Compare two runners image by image; raise :class:`ModelError` when mask IoU < ``min_iou``.

    Args:
        reference: usually :func:`torch_runner` of the wrapper.
        candidate: the exported model's runner (:func:`onnx_runner`, later Core ML, ExecuTorch ...).
        images: ``(H, W, 3)`` uint8 RGB images at the model's input size.
        what: names the model in the error message (e.g. the file path).
    """
    if not images:
        raise ModelError(f"{what}: parity check needs at least one image")
    inter = union = 0
    worst = 1.0
    max_diff = 0.0
    for img in images:
        batch = np.ascontiguousarray(img[None], dtype=np.uint8)
        p_ref, m_ref = reference(batch)
        p_new, m_new = candidate(batch)
        if p_new.shape != p_ref.shape or m_new.shape != m_ref.shape:
            raise ModelError(
                f"{what}: output shapes {p_new.shape}/{m_new.shape} differ from PyTorch's "
                f"{p_ref.shape}/{m_ref.shape}"
            )
        a, b = m_ref > 127, m_new > 127
        i, u = int(np.logical_and(a, b).sum()), int(np.logical_or(a, b).sum())
        inter, union = inter + i, union + u
        worst = min(worst, i / u if u else 1.0)
        max_diff = max(max_diff, float(np.abs(p_ref.astype(np.float64) - p_new.astype(np.float64)).max()))
    iou = inter / union if union else 1.0
    h, w = images[0].shape[:2]
    report = ParityReport(
        iou=iou,
        min_image_iou=worst,
        max_abs_diff=max_diff,
        n_images=len(images),
        size=(w, h),
        min_iou=min_iou,
        passed=iou >= min_iou,
    )
    if not report.passed:
        raise ModelError(
            f"{what}: parity check failed: mask IoU {iou:.4f} against PyTorch is below {min_iou} "
            f"(max probability difference {max_diff:.2e})"
        )
    return report


# ----------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What an export wrote: ``path``, ``format``, ``bytes``, exporter details and parity."""

    path: Path
    format: str
    bytes: int
    parity: ParityReport
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "bytes": self.bytes,
            "parity": self.parity.to_dict(),
            **self.details,
        }


def card_metadata(card: ModelCard) -> dict[str, str]:
    """The card as string key/value pairs for a model file's metadata (see :data:`METADATA_KEYS`).

    ``model_card`` holds the whole card as JSON, so the file describes itself.
    """
    w, h = card.input_size
    return {
        "arch": card.arch,
        "name": card.name or card.arch,
        "version": str(card.version),
        "input_size": f"{w}x{h}",
        "input_width": str(w),
        "input_height": str(h),
        "input_format": INPUT_FORMAT,
        "threshold": repr(float(card.threshold)),
        "labels": json.dumps(list(card.labels)),
        "mean": json.dumps(list(card.mean)),
        "std": json.dumps(list(card.std)),
        "outputs": "probability (1,1,H,W) float32 0..1; mask (1,1,H,W) uint8 0/255 (prob >= threshold)",
        "model_card": json.dumps(card.to_dict(), sort_keys=True),
    }


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file as a dict (reads with the ``onnx`` package)."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "export") from exc
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def _torch_onnx_export(
    wrapper: Any,
    example: Any,
    out: Path,
    *,
    opset: int,
    dynamic_size: bool,
    exporter: str,
) -> None:
    import torch

    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": list(OUTPUT_NAMES),
        "opset_version": opset,
    }
    if exporter == "legacy":
        kwargs["dynamo"] = False
        if dynamic_size:
            kwargs["dynamic_axes"] = {
                INPUT_NAME: {1: "height", 2: "width"},
                "probability": {2: "height", 3: "width"},
                "mask": {2: "height", 3: "width"},
            }
    else:
        kwargs["dynamo"] = True
        kwargs["verbose"] = False
        kwargs["external_data"] = False
        if dynamic_size:
            hd = torch.export.Dim("height", min=16, max=8192)
            wd = torch.export.Dim("width", min=16, max=8192)
            kwargs["dynamic_shapes"] = ({1: hd, 2: wd},)
    sink = io.StringIO()
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        torch.inference_mode(False),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), str(out), **kwargs)
    if sink.getvalue().strip():
        log.debug("torch.onnx.export (%s) said:\n%s", exporter, sink.getvalue())


def export_onnx(
    model: Any,
    card: ModelCard,
    out_path: str | os.PathLike[str],
    *,
    opset: int = 17,
    dynamic_size: bool = False,
    exporter: str = "auto",
    parity_n: int = 4,
    min_iou: float = PARITY_MIN_IOU,
) -> ExportResult:
    """Export ``model`` wrapped in :class:`ExportWrapper` to ONNX, embed the card, check parity.

    Args:
        model: the student (any ``nn.Module`` mapping normalised ``(N, 3, H, W)`` to logits).
        card: its card; ``card.input_size`` is the exported size.
        out_path: destination ``.onnx`` file, or a folder (then ``<folder>/model.onnx``).
        opset: ONNX opset (17 or later).
        dynamic_size: export height and width as dynamic axes (the input stays NHWC uint8).
        exporter: ``"legacy"`` (TorchScript tracing), ``"dynamo"`` (``torch.export``) or ``"auto"``.
            Auto picks legacy for opset <= 17 and dynamo for opset >= 18, and falls back to
            the other when the first fails. Why: in torch 2.14.1 the dynamo exporter only
            emits opset >= 18 natively and must down-convert to 17; that conversion fails on
            LR-ASPP's ReduceMean (axes input -> attribute; the file silently stays at opset 18), while
            the legacy tracer writes opset 17 exactly, in a fraction of the time (0.3 s versus
            5-15 s for LR-ASPP). Both give the same numbers (max difference ~6e-8).
        parity_n: number of :func:`parity_images` to check.
        min_iou: parity threshold on the mask IoU.

    Returns:
        :class:`ExportResult` with the file, its size, the exporter used and the parity report.

    Raises:
        ModelError: the export fails in every exporter, or parity fails (the file is then
            removed, so a bad export never lies around looking good).
        MissingDependencyError: ``onnx`` is not installed.
    """
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "export") from exc
    import torch

    if opset < 17:
        raise ModelError(f"opset {opset} is too old; use 17 or later")
    if exporter not in ("auto", "legacy", "dynamo"):
        raise ModelError(f"unknown exporter {exporter!r}; choose auto, legacy or dynamo")
    out = Path(out_path)
    if out.is_dir() or out.suffix.lower() != ".onnx":
        out = out / ONNX_FILE
    out.parent.mkdir(parents=True, exist_ok=True)

    model = model.eval()
    wrapper = make_wrapper(model, card)
    w, h = card.input_size
    images = parity_images((w, h), parity_n)
    example = torch.from_numpy(images[0][None].copy())

    if exporter == "auto":
        order = ["legacy", "dynamo"] if opset <= 17 else ["dynamo", "legacy"]
    else:
        order = [exporter]
    used = None
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=out.parent) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        for name in order:
            try:
                _torch_onnx_export(
                    wrapper, example, tmp_path, opset=opset, dynamic_size=dynamic_size, exporter=name
                )
                used = name
                break
            except Exception as exc:  # exporters raise many unrelated types
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                errors.append(f"{name}: {first}")
                log.info("ONNX exporter %s failed: %s", name, first)
        if used is None:
            raise ModelError(f"{out}: ONNX export of {card.arch!r} failed ({'; '.join(errors)})")
        proto = onnx.load(str(tmp_path), load_external_data=True)
        del proto.metadata_props[:]
        for key, value in card_metadata(card).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "okrainsight"
        proto.doc_string = f"OkraInsight {card.name or card.arch}: {INPUT_FORMAT}"
        written_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        data = proto.SerializeToString()

    check_path = out.with_name(f".{out.name}.check")
    atomic_write_bytes(check_path, data)
    try:
        parity = check_parity(
            torch_runner(wrapper), onnx_runner(check_path), images, min_iou=min_iou, what=str(out)
        )
    except BaseException:
        check_path.unlink(missing_ok=True)
        raise
    os.replace(check_path, out)
    log.info(
        "exported %s with the %s exporter (opset %s): parity IoU %.4f, max diff %.2e",
        out,
        used,
        written_opset,
        parity.iou,
        parity.max_abs_diff,
    )
    return ExportResult(
        path=out,
        format="onnx",
        bytes=out.stat().st_size,
        parity=parity,
        details={"exporter": used, "opset": written_opset, "dynamic_size": dynamic_size},
    )


__all__ = [
    "ExportResult",
    "make_wrapper",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "ParityReport",
    "card_metadata",
    "check_parity",
    "export_onnx",
    "onnx_runner",
    "parity_images",
    "read_onnx_metadata",
    "torch_runner",
]
