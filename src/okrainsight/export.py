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
:class:`~okrainsight.errors.ModelError`. The mobile formats use the same wrapper and
the same :func:`check_parity` with their own runner (:func:`export_model` dispatches):
ExecuTorch ``.pte`` (XNNPACK; ExecuTorch's Python runtime), TorchScript ``.pt``
(``torch.jit.load``), ONNX fp16/int8 (judged by their IoU drop against fp32, at most
:data:`MAX_DROP_POINTS`), and Core ML ``.mlpackage`` (an ``ImageType`` input, so its
wrapper takes float ``(1, 3, H, W)`` 0..255, see :func:`make_coreml_wrapper`; on Linux
the spec is validated, on macOS Core ML runs the parity check).

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

from okrainsight.checkpoint import ModelCard
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

        def probability(self, x: torch.Tensor) -> torch.Tensor:
            """float ``(N, 3, H, W)`` RGB in 0..1 -> probability ``(N, 1, H, W)`` float32 in 0..1
            (the card's mean/std, the student and the sigmoid; shared by every wrapper)."""
            out = self.model((x - self.mean) / self.std)
            if isinstance(out, dict):  # torchvision segmentation models (decided at trace time)
                out = out["out"]
            return torch.sigmoid(out)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probability = self.probability(image.permute(0, 3, 1, 2).to(torch.float32) / 255.0)
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


def _embed_card(proto: Any, card: ModelCard, **extra: str) -> None:
    """Replace an ONNX ``ModelProto``'s metadata with :func:`card_metadata` (plus ``extra``)."""
    del proto.metadata_props[:]
    for key, value in {**card_metadata(card), **extra}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "okrainsight"


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
    out = _output_path(out_path, "onnx")
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
        _embed_card(proto, card)
        proto.doc_string = f"OkraInsight {card.name or card.arch}: {INPUT_FORMAT}"
        written_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        data = proto.SerializeToString()

    parity = _checked_export(
        out,
        lambda tmp: atomic_write_bytes(tmp, data),
        lambda tmp: check_parity(
            torch_runner(wrapper), onnx_runner(tmp), images, min_iou=min_iou, what=str(out)
        ),
    )
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


# ----------------------------------------------------------------------------------
# Mobile formats: Core ML, ExecuTorch, TorchScript; ONNX fp16 and int8
# ----------------------------------------------------------------------------------

#: Formats :func:`export_model` writes, with their file suffix.
FORMAT_SUFFIX = {"onnx": ".onnx", "coreml": ".mlpackage", "executorch": ".pte", "torchscript": ".pt"}
#: Largest IoU loss (in points, 0..100) an fp16 or int8 file may show against the fp32 export.
MAX_DROP_POINTS = 1.0
#: Core ML input: what the ``ImageType`` feeds the wrapper.
COREML_INPUT_FORMAT = (
    "Core ML ImageType RGB (a CVPixelBuffer / CGImage, e.g. from Vision) at WxH, scale 1, no bias: "
    "the model sees float (1, 3, H, W) 0..255; /255, mean/std and sigmoid are inside"
)
#: Calibration images used at most for int8 quantisation.
MAX_CALIBRATION_IMAGES = 64


@functools.cache
def _coreml_wrapper_class() -> type:
    import torch

    class CoreMLWrapper(_wrapper_class()):
        """float ``(1, 3, H, W)`` RGB 0..255 (a Core ML ``ImageType``) -> (probability, mask 0/255)."""

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probability = self.probability(image / 255.0)
            mask = (probability >= self.threshold).to(torch.float32) * 255.0
            return probability, mask

    return CoreMLWrapper


def make_coreml_wrapper(model: Any, card: ModelCard) -> Any:
    """The Core ML variant of :func:`make_wrapper`.

    A Core ML ``ImageType`` input (RGB, ``scale=1``, no bias) hands the network float
    ``(1, 3, H, W)`` with values 0..255, so this wrapper takes exactly that, divides by 255,
    applies the card's mean/std, and returns ``probability`` ``(1, 1, H, W)`` in 0..1 and
    ``mask`` ``(1, 1, H, W)`` float 0/255 (Core ML tensors have no uint8 outputs before iOS 17).
    """
    return _coreml_wrapper_class()(model, card).eval()


def load_export_source(spec: str | os.PathLike[str]) -> tuple[Any, ModelCard]:
    """Load the PyTorch student behind ``spec`` for export.

    Args:
        spec: a training run folder or model folder (``card.json`` + ``model.safetensors``), a file
            inside one, or a built-in name (``default`` = ``okrainsight/models/default/``).

    Returns:
        ``(model, card)``, the model in eval mode on the CPU.

    Raises:
        ModelError: nothing loadable there (names the path or the built-in folder looked at).
    """
    from okrainsight.checkpoint import CARD_FILE, WEIGHTS_FILE, load_checkpoint
    from okrainsight.runtime import BUILTIN_DIR

    p = Path(spec)
    if p.exists():
        return load_checkpoint(p)
    text = os.fspath(spec)
    if text and "/" not in text and os.sep not in text:
        d = BUILTIN_DIR / text
        if (d / CARD_FILE).is_file() and (d / WEIGHTS_FILE).is_file():
            return load_checkpoint(d)
        raise ModelError(
            f"no built-in model named {text!r} with PyTorch weights ({d} needs {CARD_FILE} and "
            f"{WEIGHTS_FILE}) and no such file or folder; train one with 'okra train' and export "
            "its run folder"
        )
    raise ModelError(f"{p}: no such model file or folder")


def rendered_split(
    size: tuple[int, int], n: int = 8, *, seed: int = 50_000
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rendered test scenes with exact masks, for accuracy (not parity) measurements.

    Args:
        size: ``(width, height)``.
        n: number of scenes (the renderer's own mix of kinds, negatives included).
        seed: the split is a pure function of ``(size, n, seed)``.

    Returns:
        ``[(image (H, W, 3) uint8 RGB, mask (H, W) uint8 0/255), ...]``, or ``[]`` when the
        renderer (:mod:`okrainsight.synth`) is not installed.
    """
    try:
        from okrainsight.synth import render_scene
    except ImportError:
        return []
    out = []
    for i in range(n):
        scene = render_scene(seed + i, size=size)
        out.append((np.ascontiguousarray(scene.image, np.uint8), np.asarray(scene.mask, np.uint8)))
    return out


def mask_iou(runner: Runner, split: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Pooled mask IoU (intersection sum / union sum) of ``runner`` against the split's masks."""
    inter = union = 0
    for img, gt in split:
        _, m = runner(np.ascontiguousarray(img[None], dtype=np.uint8))
        a, b = np.asarray(m).reshape(gt.shape) > 127, gt > 127
        inter += int(np.logical_and(a, b).sum())
        union += int(np.logical_or(a, b).sum())
    return inter / union if union else 1.0


def torchscript_runner(path: str | os.PathLike[str]) -> Runner:
    """Run a TorchScript ``.pt`` written by :func:`export_torchscript` -> (probability, mask) numpy."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch.jit raises RuntimeError and friends
        raise ModelError(f"{path}: torch.jit.load cannot read it ({_one_line(exc)})") from exc

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            prob, mask = module(torch.from_numpy(np.ascontiguousarray(batch)))
        return prob.numpy(), mask.numpy()

    return run


def executorch_runner(path: str | os.PathLike[str], *, threads: int | None = None) -> Runner:
    """Run an ExecuTorch ``.pte`` in ExecuTorch's Python runtime (XNNPACK) -> (probability, mask).

    Args:
        threads: resize XNNPACK's thread pool (process-wide) when given.
    """
    import torch

    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise MissingDependencyError("executorch", "export") from exc
    if threads:
        with contextlib.suppress(ImportError, AttributeError, RuntimeError):
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(int(threads))
    try:
        method = Runtime.get().load_program(Path(path)).load_method("forward")
    except Exception as exc:  # the runtime raises RuntimeError/ValueError
        raise ModelError(f"{path}: ExecuTorch cannot load it ({_one_line(exc)})") from exc

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob, mask = method.execute([torch.from_numpy(np.array(batch, dtype=np.uint8, order="C", copy=True))])
        return prob.numpy(), mask.numpy()

    return run


def read_executorch_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The card metadata stored in a ``.pte`` as constant methods (one string per key)."""
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise MissingDependencyError("executorch", "export") from exc
    program = Runtime.get().load_program(Path(path))
    meta = {}
    for key in METADATA_KEYS:
        if key in program.method_names:
            (value,) = program.load_method(key).execute([])
            meta[key] = str(value)
    return meta


def read_torchscript_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata.json`` extra file of a TorchScript ``.pt`` as a dict."""
    import torch

    extra = {"metadata.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["metadata.json"] or "{}")


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def _output_path(out: str | os.PathLike[str], fmt: str, variant: str = "") -> Path:
    """``out`` itself when it ends in the format's suffix, else ``out/model[.variant]<suffix>``."""
    suffix = FORMAT_SUFFIX[fmt]
    p = Path(out)
    if p.suffix.lower() == suffix and not (p.is_dir() and fmt != "coreml"):
        return p
    return p / f"model{'.' + variant if variant else ''}{suffix}"


def _example(images: Sequence[np.ndarray]) -> Any:
    import torch

    # a fresh copy: ``img[None]`` has a zero stride on the new axis, which ExecuTorch refuses
    return torch.from_numpy(np.array(images[0][None], dtype=np.uint8, order="C", copy=True))


def _publish(tmp: Path, out: Path) -> None:
    """Move a checked file or folder into place (replacing an older one)."""
    import shutil

    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _checked_export(
    out: Path, write: Callable[[Path], None], check: Callable[[Path], ParityReport]
) -> ParityReport:
    """Write to a hidden sibling, check it, then move it into place; on any failure remove it."""
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".check-{out.name}")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    tmp.unlink(missing_ok=True)
    try:
        write(tmp)
        parity = check(tmp)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    _publish(tmp, out)
    return parity


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _export_checked_against_eager(
    model: Any,
    card: ModelCard,
    out: Path,
    fmt: str,
    write: Callable[[Path, Any, Any], None],
    runner: Callable[[Path], Runner],
    *,
    parity_n: int,
    min_iou: float,
    details: dict[str, Any],
) -> ExportResult:
    """The shared body of the TorchScript and ExecuTorch exports.

    ``write(tmp, wrapper, example)`` writes the :class:`ExportWrapper` of ``model`` (traced on
    the uint8 ``example`` batch) to ``tmp``; ``runner(tmp)`` then runs the written file against
    the eager wrapper on :func:`parity_images` before it is moved to ``out``.
    """
    wrapper = make_wrapper(model.eval(), card)
    images = parity_images(card.input_size, parity_n)

    def check(tmp: Path) -> ParityReport:
        return check_parity(torch_runner(wrapper), runner(tmp), images, min_iou=min_iou, what=str(out))

    parity = _checked_export(out, lambda tmp: write(tmp, wrapper, _example(images)), check)
    return ExportResult(out, fmt, _size_of(out), parity, details)


def export_torchscript(
    model: Any,
    card: ModelCard,
    out_path: str | os.PathLike[str],
    *,
    parity_n: int = 4,
    min_iou: float = PARITY_MIN_IOU,
) -> ExportResult:
    """Trace :class:`ExportWrapper` with ``torch.jit.trace`` into a ``.pt`` for LibTorch.

    The card metadata (:func:`card_metadata`) travels as the extra file ``metadata.json`` and
    the whole card as ``card.json`` (``torch.jit.load(path, _extra_files={...})`` reads them).
    Parity: ``torch.jit.load`` of the written file against the eager wrapper.
    """
    import torch

    extra = {
        "metadata.json": json.dumps(card_metadata(card), sort_keys=True),
        "card.json": json.dumps(card.to_dict(), sort_keys=True),
    }

    def write(tmp: Path, wrapper: Any, example: Any) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
            buf = io.BytesIO()
            torch.jit.save(traced, buf, _extra_files=extra)
        atomic_write_bytes(tmp, buf.getvalue())

    out = _output_path(out_path, "torchscript")
    return _export_checked_against_eager(
        model,
        card,
        out,
        "torchscript",
        write,
        torchscript_runner,
        parity_n=parity_n,
        min_iou=min_iou,
        details={"tracer": "torch.jit.trace"},
    )


def export_executorch(
    model: Any,
    card: ModelCard,
    out_path: str | os.PathLike[str],
    *,
    parity_n: int = 4,
    min_iou: float = PARITY_MIN_IOU,
) -> ExportResult:
    """``torch.export`` of :class:`ExportWrapper`, lowered to XNNPACK, written as a ``.pte``.

    The card metadata (:func:`card_metadata`) is stored as constant methods returning strings
    (``program.load_method("threshold").execute([])``; see :func:`read_executorch_metadata`).
    Parity: ExecuTorch's Python runtime runs the written file against the eager wrapper.
    """
    import torch

    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise MissingDependencyError("executorch", "export") from exc
    out = _output_path(out_path, "executorch")

    def write(tmp: Path, wrapper: Any, example: Any) -> None:
        sink = io.StringIO()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
                warnings.simplefilter("ignore")
                with torch.no_grad():
                    program = torch.export.export(wrapper, (example,))
                edge = to_edge_transform_and_lower(
                    program, partitioner=[XnnpackPartitioner()], constant_methods=card_metadata(card)
                )
                buffer = edge.to_executorch().buffer
        except Exception as exc:  # torch.export / exir raise many types
            raise ModelError(f"{out}: ExecuTorch export of {card.arch!r} failed ({_one_line(exc)})") from exc
        atomic_write_bytes(tmp, buffer)

    return _export_checked_against_eager(
        model,
        card,
        out,
        "executorch",
        write,
        executorch_runner,
        parity_n=parity_n,
        min_iou=min_iou,
        details={"backend": "XNNPACK"},
    )


def coreml_metadata(card: ModelCard) -> dict[str, str]:
    """:func:`card_metadata` with the Core ML input described (goes into ``user_defined_metadata``)."""
    meta = card_metadata(card)
    meta["input_format"] = COREML_INPUT_FORMAT
    meta["outputs"] = "probability (1,1,H,W) float 0..1; mask (1,1,H,W) float 0/255 (prob >= threshold)"
    return meta


def validate_coreml_spec(path: str | os.PathLike[str], card: ModelCard) -> dict[str, Any]:
    """Check an ``.mlpackage`` without running it (works on Linux).

    Checks: one input ``image`` that is an RGB ``ImageType`` of the card's size; outputs
    ``probability`` and ``mask``, multi-arrays of shape ``(1, 1, H, W)``; an ML Program; every
    :data:`METADATA_KEYS` entry in ``user_defined_metadata`` with the card's values.

    Returns:
        A summary dict (input, outputs, spec version, metadata keys).

    Raises:
        ModelError: naming the first mismatch.
    """
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    w, h = card.input_size
    if [i.name for i in desc.input] != [INPUT_NAME]:
        raise ModelError(f"{path}: Core ML inputs are {[i.name for i in desc.input]}, expected ['image']")
    inp = desc.input[0].type
    if inp.WhichOneof("Type") != "imageType":
        raise ModelError(f"{path}: Core ML input 'image' is not an ImageType")
    colour = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(inp.imageType.colorSpace)
    if colour != "RGB" or (inp.imageType.width, inp.imageType.height) != (w, h):
        raise ModelError(
            f"{path}: Core ML input is {colour} {inp.imageType.width}x{inp.imageType.height}, "
            f"expected RGB {w}x{h}"
        )
    outputs = {}
    for o in desc.output:
        if o.type.WhichOneof("Type") != "multiArrayType":
            raise ModelError(f"{path}: Core ML output {o.name!r} is not a multi-array")
        outputs[o.name] = tuple(int(s) for s in o.type.multiArrayType.shape)
    for name in OUTPUT_NAMES:
        if outputs.get(name) != (1, 1, h, w):
            raise ModelError(
                f"{path}: Core ML output {name!r} has shape {outputs.get(name)}, expected (1, 1, {h}, {w})"
            )
    if spec.WhichOneof("Type") != "mlProgram":
        raise ModelError(f"{path}: not an ML Program")
    meta = dict(desc.metadata.userDefined)
    want = coreml_metadata(card)
    for key in METADATA_KEYS:
        if meta.get(key) != want[key]:
            raise ModelError(f"{path}: Core ML metadata {key!r} is missing or differs from the card")
    return {
        "input": {"name": INPUT_NAME, "type": "ImageType", "color": colour, "size": [w, h]},
        "outputs": {k: list(v) for k, v in outputs.items()},
        "specification_version": int(spec.specificationVersion),
        "metadata_keys": sorted(meta),
    }


def coreml_runner(path: str | os.PathLike[str]) -> Runner:
    """Run an ``.mlpackage`` with Core ML (macOS only) -> (probability float32, mask uint8)."""
    import coremltools as ct
    from PIL import Image

    mlmodel = ct.models.MLModel(str(path))

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = mlmodel.predict({INPUT_NAME: Image.fromarray(np.ascontiguousarray(batch[0]), "RGB")})
        prob = np.asarray(out["probability"], np.float32)
        mask = np.where(np.asarray(out["mask"]) > 127, 255, 0).astype(np.uint8)
        return prob, mask

    return run


def export_coreml(
    model: Any,
    card: ModelCard,
    out_path: str | os.PathLike[str],
    *,
    fp16: bool = False,
    parity_n: int = 4,
    min_iou: float = PARITY_MIN_IOU,
    predict: bool | None = None,
) -> ExportResult:
    """Convert :func:`make_coreml_wrapper` (traced) to a Core ML ML Program ``.mlpackage`` (iOS 16+).

    The input ``image`` is an RGB ``ImageType`` of the card's size (``scale=1``, no bias), so a
    Vision request or a camera ``CVPixelBuffer`` feeds it directly; normalisation and sigmoid
    are inside. ``fp16`` selects fp16 compute precision (what the Neural Engine runs), else fp32.
    Card metadata goes into ``user_defined_metadata``; short description, version and author are set.

    Parity: on macOS (or ``predict=True``) Core ML runs the file on the parity images; elsewhere
    the spec is validated instead (:func:`validate_coreml_spec`) and the parity report says
    ``n_images=0``.
    """
    import platform

    import torch

    try:
        import coremltools as ct
    except ImportError as exc:
        raise MissingDependencyError("coremltools", "export") from exc
    out = _output_path(out_path, "coreml")
    w, h = card.input_size
    model = model.eval()
    wrapper = make_coreml_wrapper(model, card)
    images = parity_images(card.input_size, parity_n)
    if predict is None:
        predict = platform.system() == "Darwin"
    details: dict[str, Any] = {"precision": "fp16" if fp16 else "fp32", "minimum_deployment_target": "iOS16"}

    def write(tmp: Path) -> None:
        example = torch.from_numpy(images[0].transpose(2, 0, 1)[None].astype(np.float32))
        sink = io.StringIO()
        ct_log = logging.getLogger("coremltools")
        ct_level = ct_log.level
        ct_log.setLevel(logging.ERROR)  # "Tuple detected at graph output" is expected here
        try:
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(sink),
                contextlib.redirect_stderr(sink),
                torch.no_grad(),
            ):
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(wrapper, (example,), check_trace=False)
                mlmodel = ct.convert(
                    traced,
                    inputs=[
                        ct.ImageType(
                            name=INPUT_NAME, shape=(1, 3, h, w), color_layout=ct.colorlayout.RGB, scale=1.0
                        )
                    ],
                    outputs=[ct.TensorType(name=n) for n in OUTPUT_NAMES],
                    convert_to="mlprogram",
                    minimum_deployment_target=ct.target.iOS16,
                    compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
                )
        except Exception as exc:  # coremltools raises many types
            raise ModelError(f"{out}: Core ML conversion of {card.arch!r} failed ({_one_line(exc)})") from exc
        finally:
            ct_log.setLevel(ct_level)
        mlmodel.short_description = (
            f"OkraInsight {card.name or card.arch}: okra probability and mask for an RGB {w}x{h} image"
        )
        mlmodel.version = str(card.version)
        mlmodel.author = "OkraInsight"
        mlmodel.license = "see the OkraInsight project"
        mlmodel.input_description[INPUT_NAME] = f"RGB image {w}x{h} (scale to this size; pixels 0..255)"
        mlmodel.output_description["probability"] = "okra probability per pixel, (1, 1, H, W), 0..1"
        mlmodel.output_description["mask"] = f"255 where probability >= {card.threshold}, else 0"
        for key, value in coreml_metadata(card).items():
            mlmodel.user_defined_metadata[key] = value
        mlmodel.save(str(tmp))

    def check(tmp: Path) -> ParityReport:
        details["spec"] = validate_coreml_spec(tmp, card)
        if predict:
            return check_parity(
                torch_runner(make_wrapper(model, card)),
                coreml_runner(tmp),
                images,
                min_iou=min_iou,
                what=str(out),
            )
        return ParityReport(
            iou=float("nan"),
            min_image_iou=float("nan"),
            max_abs_diff=float("nan"),
            n_images=0,
            size=(w, h),
            min_iou=min_iou,
            passed=True,
        )

    parity = _checked_export(out, write, check)
    details["parity_checked"] = (
        "Core ML prediction" if predict else "spec validated only (Core ML prediction needs macOS)"
    )
    return ExportResult(out, "coreml", _size_of(out), parity, details)


class _CalibrationReader:
    """Feeds calibration images (resized to the model's input size) to ``quantize_static``."""

    def __init__(self, paths: Sequence[Path], size: tuple[int, int]) -> None:
        self._paths = list(paths)
        self._size = size
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        import cv2

        from okrainsight.imageio import read_image

        if self._i >= len(self._paths):
            return None
        img = read_image(self._paths[self._i])
        self._i += 1
        w, h = self._size
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return {INPUT_NAME: np.ascontiguousarray(img[None], dtype=np.uint8)}

    def rewind(self) -> None:
        self._i = 0


def calibration_images(folder: str | os.PathLike[str], limit: int = MAX_CALIBRATION_IMAGES) -> list[Path]:
    """Up to ``limit`` image files under ``folder`` (sorted, evenly spaced when there are more)."""
    from okrainsight.imageio import iter_image_files

    d = Path(folder)
    if not d.is_dir():
        raise ModelError(f"{d}: int8 calibration needs a folder of images; no such folder")
    files = iter_image_files([d])
    if not files:
        raise ModelError(f"{d}: no images for int8 calibration in this folder")
    if len(files) > limit:
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


def _set_onnx_metadata(path: Path, card: ModelCard, precision: str) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=True)
    _embed_card(proto, card, precision=precision)
    atomic_write_bytes(path, proto.SerializeToString())


def quantise_conv_weights(proto: Any, min_elements: int = 16) -> int:
    """Store a float32 ONNX graph's convolution weights as int8, in place; compute stays float32.

    Each rank-4 float32 ``Conv`` weight initializer of at least ``min_elements`` values becomes a
    symmetric int8 tensor with one scale per output channel (``scale = max|w| / 127``) and two
    nodes, ``Cast`` to float32 then ``Mul`` by the scales, that write the float32 weight under its
    old name, so every consumer is unchanged. Both nodes have constant inputs only, so ONNX
    Runtime folds them into a float32 weight when it opens the session: inference runs at the
    fp32 file's speed (a ``DequantizeLinear`` node instead is kept by its QDQ-aware optimisers and
    ran 2.5 times slower here). Activations, biases and every other tensor stay float32: unlike
    ``int8`` (static QDQ) no calibration images are needed, and unlike ``fp16`` the arithmetic is
    that of the fp32 file; the weights take a quarter of the bytes, with a rounding error of at
    most half a step (``scale / 2``) per weight.

    Left in float32: weights that are graph inputs, weights another op (or another input of a
    ``Conv``) reads too, and weights held in ``Constant`` nodes rather than initializers (the
    legacy exporter writes initializers). New tensor names never clash with existing ones.

    Args:
        proto: an ``onnx.ModelProto`` (changed in place).
        min_elements: smaller weights are left in float32.

    Returns:
        The number of weights converted.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    conv_weights = {n.input[1] for n in graph.node if n.op_type == "Conv" and len(n.input) > 1}
    # left alone: weights a caller may feed (graph inputs) and weights another input or op also reads
    other_uses = {name for n in graph.node for i, name in enumerate(n.input) if n.op_type != "Conv" or i != 1}
    other_uses |= {i.name for i in graph.input}
    taken = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    taken |= {o for n in graph.node for o in n.output}

    def fresh(name: str) -> str:
        k, out = 0, name
        while out in taken:
            k += 1
            out = f"{name}_{k}"
        taken.add(out)
        return out

    keep, added, dequant = [], [], []
    for init in graph.initializer:
        usable = init.name in conv_weights and init.name not in other_uses
        w = numpy_helper.to_array(init) if usable and init.data_type == TensorProto.FLOAT else None
        if w is None or w.ndim != 4 or w.size < min_elements:
            keep.append(init)
            continue
        amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1).astype(np.float32) / np.float32(127.0)
        scale = np.where(amax > np.finfo(np.float32).tiny, amax, np.float32(1.0)).astype(np.float32)
        q = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
        q_name, s_name = fresh(f"{init.name}_int8"), fresh(f"{init.name}_scale")
        f_name = fresh(f"{init.name}_float")
        added += [
            numpy_helper.from_array(q, q_name),
            numpy_helper.from_array(scale.reshape(-1, 1, 1, 1), s_name),
        ]
        dequant += [
            helper.make_node("Cast", [q_name], [f_name], to=TensorProto.FLOAT, name=f"cast_{init.name}"),
            helper.make_node("Mul", [f_name, s_name], [init.name], name=f"scale_{init.name}"),
        ]
    del graph.initializer[:]
    graph.initializer.extend(keep + added)
    nodes = dequant + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(dequant) // 2


def export_onnx_reduced(
    model: Any,
    card: ModelCard,
    out_path: str | os.PathLike[str],
    *,
    precision: str,
    calib_dir: str | os.PathLike[str] | None = None,
    parity_n: int = 4,
    max_drop_points: float = MAX_DROP_POINTS,
    split_n: int = 8,
) -> ExportResult:
    """ONNX in fp16 (weights and compute, uint8 input and float32 outputs kept), int8 (static QDQ),
    or int8w (int8 convolution weights, float32 compute: :func:`quantise_conv_weights`).

    Steps: export the fp32 ONNX (with its own parity check against PyTorch), convert it
    (``onnxruntime.transformers.float16`` with ``keep_io_types``; or ``quantize_static`` in QDQ
    format, per-channel int8 weights, uint8 activations, calibrated on ``calib_dir``), then
    measure the IoU *drop*: pooled mask IoU on :func:`rendered_split` (exact rendered masks; the
    fp32 export's masks when the renderer is missing) of the fp32 file minus that of the reduced
    file, in points (0..100). More than ``max_drop_points`` fails. The agreement with PyTorch
    (mask IoU, max probability difference) is reported, not gated: int8 near the threshold flips
    pixels by design.
    """
    if precision not in ("fp16", "int8", "int8w"):
        raise ModelError(f"unknown ONNX precision {precision!r}; choose fp16, int8 or int8w")
    if precision == "int8" and calib_dir is None:
        raise ModelError("int8 export needs a calibration folder of images (--int8 CALIB_DIR)")
    calib = calibration_images(calib_dir) if precision == "int8" else []
    out = _output_path(out_path, "onnx", precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    wrapper = make_wrapper(model, card)
    images = parity_images(card.input_size, parity_n)
    split = rendered_split(card.input_size, split_n)
    with tempfile.TemporaryDirectory(prefix=".onnx-reduce-", dir=out.parent) as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        pre_path = Path(tmp) / "fp32-pre.onnx"
        fp32 = export_onnx(model, card, fp32_path, parity_n=parity_n)
        fp32_run = onnx_runner(fp32_path)
        if not split:  # no renderer: judge against the fp32 export's own masks
            split = [(img, fp32_run(img[None])[1].reshape(img.shape[:2])) for img in images]
        iou32 = mask_iou(fp32_run, split)
        result: dict[str, Any] = {}

        def write(dst: Path) -> None:
            if precision == "fp16":
                import onnx
                from onnxruntime.transformers.float16 import convert_float_to_float16

                proto = onnx.load(str(fp32_path))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    half = convert_float_to_float16(proto, keep_io_types=True)
                atomic_write_bytes(dst, half.SerializeToString())
            elif precision == "int8w":
                import onnx

                proto = onnx.load(str(fp32_path))
                if not quantise_conv_weights(proto):
                    raise ModelError(f"{out}: no convolution weights to store as int8")
                atomic_write_bytes(dst, proto.SerializeToString())
            else:
                from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
                from onnxruntime.quantization.shape_inference import quant_pre_process

                source = fp32_path
                logging.disable(logging.WARNING)  # the quantiser logs advice on the root logger
                try:
                    try:  # folds constants and Identity nodes so biases become initializers
                        quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
                        source = pre_path
                    except Exception as exc:  # optional step; quantise the plain file then
                        log.debug("quant_pre_process failed (%s); quantising without it", exc)
                    quantize_static(
                        str(source),
                        str(dst),
                        _CalibrationReader(calib, card.input_size),
                        quant_format=QuantFormat.QDQ,
                        per_channel=True,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                    )
                except Exception as exc:  # onnxruntime raises many types
                    raise ModelError(f"{out}: int8 quantisation failed ({_one_line(exc)})") from exc
                finally:
                    logging.disable(logging.NOTSET)
            _set_onnx_metadata(dst, card, precision)

        def check(dst: Path) -> ParityReport:
            run = onnx_runner(dst)
            agreement = check_parity(torch_runner(wrapper), run, images, min_iou=0.0, what=str(out))
            iou_low = mask_iou(run, split)
            drop = (iou32 - iou_low) * 100.0
            result.update(
                {
                    "precision": precision,
                    "iou_fp32": iou32,
                    "iou": iou_low,
                    "drop_points": drop,
                    "max_drop_points": max_drop_points,
                    "fp32_parity": fp32.parity.to_dict(),
                    "calibration_images": len(calib),
                    "split_images": len(split),
                }
            )
            if drop > max_drop_points:
                raise ModelError(
                    f"{out}: {precision} parity check failed: IoU drops {drop:.2f} points against the fp32 "
                    f"export ({iou32:.4f} -> {iou_low:.4f}; at most {max_drop_points} allowed)"
                )
            agreement.min_iou = 0.0
            return agreement

        parity = _checked_export(out, write, check)
    log.info("exported %s (%s): IoU drop %.2f points", out, precision, result["drop_points"])
    return ExportResult(out, "onnx", _size_of(out), parity, result)


def export_model(
    model: Any,
    card: ModelCard,
    fmt: str,
    out_path: str | os.PathLike[str],
    *,
    fp16: bool = False,
    int8_calib: str | os.PathLike[str] | None = None,
    int8_weights: bool = False,
    size: tuple[int, int] | None = None,
    parity_n: int = 4,
    min_iou: float = PARITY_MIN_IOU,
    max_drop_points: float = MAX_DROP_POINTS,
) -> ExportResult:
    """Export ``model`` to ``fmt`` (``onnx``, ``coreml``, ``executorch``, ``torchscript``) with parity.

    Args:
        out_path: the file (``.onnx``, ``.mlpackage``, ``.pte``, ``.pt``) or a folder for
            ``model[.fp16|.int8]<suffix>``.
        fp16: ONNX: fp16 weights and compute; Core ML: fp16 compute precision.
        int8_calib: ONNX only: folder of calibration images for static int8 quantisation.
        int8_weights: ONNX only: int8 convolution weights, float32 compute (no calibration).
        size: ``(width, height)`` to export at instead of the card's input size (recorded in the card).

    Raises:
        ModelError: unsupported combination, failed export, or failed parity (no file is left).
    """
    import dataclasses

    if fmt not in FORMAT_SUFFIX:
        raise ModelError(f"unknown export format {fmt!r}; choose {', '.join(FORMAT_SUFFIX)}")
    if size is not None:
        w, h = (int(v) for v in size)
        if w < 16 or h < 16:
            raise ModelError(f"export size {w}x{h} is too small (at least 16x16)")
        card = dataclasses.replace(card, input_size=(w, h))
    if int8_calib is not None and fmt != "onnx":
        raise ModelError("int8 quantisation (--int8) is available for ONNX only")
    if sum((int8_calib is not None, fp16, int8_weights)) > 1:
        raise ModelError("choose one of --fp16, --int8 and --int8-weights")
    if int8_weights and fmt != "onnx":
        raise ModelError("int8 weights (--int8-weights) are available for ONNX only")
    if fp16 and fmt in ("executorch", "torchscript"):
        raise ModelError(f"--fp16 is not supported for {fmt} (fp32 only); use onnx or coreml")
    if fmt == "onnx":
        if int8_calib is not None or fp16 or int8_weights:
            return export_onnx_reduced(
                model,
                card,
                out_path,
                precision="int8" if int8_calib is not None else ("int8w" if int8_weights else "fp16"),
                calib_dir=int8_calib,
                parity_n=parity_n,
                max_drop_points=max_drop_points,
            )
        return export_onnx(model, card, out_path, parity_n=parity_n, min_iou=min_iou)
    if fmt == "coreml":
        return export_coreml(model, card, out_path, fp16=fp16, parity_n=parity_n, min_iou=min_iou)
    if fmt == "executorch":
        return export_executorch(model, card, out_path, parity_n=parity_n, min_iou=min_iou)
    return export_torchscript(model, card, out_path, parity_n=parity_n, min_iou=min_iou)


# ----------------------------------------------------------------------------------
# The grader's pod-crop CNN, exported next to the student (okra export --grader DIR)
# ----------------------------------------------------------------------------------

#: Largest absolute tender-probability difference allowed between an exported CNN and PyTorch.
GRADER_PARITY_MAX_DIFF = 1e-4


def grader_parity_crops(n: int = 8, *, seed: int = 7) -> np.ndarray:
    """Deterministic CNN inputs: ``(n, 3, 32, 64)`` float32 0..1, a noisy green-to-brown pod
    (an ellipse of random size and tilt) on a zero background, as :func:`cnn_input` gives."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:64].astype(np.float32)
    out = np.zeros((n, 3, 32, 64), np.float32)
    for i in range(n):
        a, b, tilt = rng.uniform(20, 32), rng.uniform(6, 16), rng.uniform(-0.3, 0.3)
        u, v = xx - 32, yy - 16 - tilt * (xx - 32)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        base = np.array([rng.uniform(0.2, 0.6), rng.uniform(0.4, 0.8), rng.uniform(0.1, 0.3)], np.float32)
        img = base[:, None, None] + rng.normal(0, 0.08, (3, 32, 64)).astype(np.float32)
        out[i] = np.clip(img, 0, 1) * inside
    return out


@dataclass
class GraderExport:
    """What :func:`export_grader` wrote: the folder, its files and the parity of each CNN file."""

    folder: Path
    files: list[Path]
    parity: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "files": [str(p) for p in self.files], "parity": self.parity}


def _validate_cnn_coreml(path: Path) -> dict[str, Any]:
    """Check the CNN's ``.mlpackage`` spec (works on Linux): input ``crop`` (1, 3, 32, 64),
    output ``tender_probability``, an ML Program."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    ins = {i.name: tuple(int(v) for v in i.type.multiArrayType.shape) for i in desc.input}
    outs = [o.name for o in desc.output]
    if ins != {"crop": (1, 3, 32, 64)} or outs != ["tender_probability"]:
        raise ModelError(
            f"{path}: Core ML CNN has inputs {ins} and outputs {outs}, expected crop / tender_probability"
        )
    if spec.WhichOneof("Type") != "mlProgram":
        raise ModelError(f"{path}: not an ML Program")
    return {"input": {"crop": [1, 3, 32, 64]}, "outputs": outs}


def export_grader(
    grader: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    coreml: bool = False,
    fp16: bool = False,
    predict: bool | None = None,
) -> GraderExport:
    """Write a grader folder ``out_dir`` for phones: ``grader.json`` (+ ``grader.onnx``, the feature
    model) copied, and the pod-crop CNN re-exported from ``cnn.safetensors`` to ``cnn.onnx`` and, with
    ``coreml``, ``cnn.mlpackage`` (input ``crop`` float32 ``(1, 3, 32, 64)`` RGB 0..1 as
    :func:`okrainsight.grading.cnn.cnn_input` makes it, output ``tender_probability`` ``(1, 1)``).

    Parity: each CNN file runs on :func:`grader_parity_crops` against PyTorch (largest probability
    difference at most :data:`GRADER_PARITY_MAX_DIFF`; Core ML off macOS: spec validated only). A
    failed check leaves no file. The written folder loads with ``okra segment --grader``.

    Raises:
        ModelError: not a grader folder, no CNN (``okra grade train --cnn``), failed export or parity.
    """
    import platform

    import torch

    from okrainsight.grading.cnn import CNN_ONNX, CNN_WEIGHTS, CnnRunner, export_cnn_onnx, load_cnn_torch
    from okrainsight.grading.model import (
        GRADER_FILE,
        GRADER_ONNX,
        OKRA_CNN_ONNX,
        OKRA_CNN_WEIGHTS,
        grader_dir,
        load_grader,
    )

    src = grader_dir(grader)
    load_grader(src)  # a readable grader card, or a one-line ModelError
    if not (src / CNN_WEIGHTS).is_file():
        raise ModelError(f"{src}: the grader has no CNN ({CNN_WEIGHTS}); train it with --cnn to export one")
    out = Path(out_dir)
    if out.resolve() == src.resolve():
        raise ModelError(f"{out}: the export folder is the grader folder itself; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    net = load_cnn_torch(src)
    crops = grader_parity_crops()
    with torch.no_grad():
        ref = net(torch.from_numpy(crops)).numpy().reshape(-1).astype(np.float64)
    parity: dict[str, Any] = {}
    files: list[Path] = []

    def check_onnx(tmp: Path) -> ParityReport:
        diff = float(np.max(np.abs(CnnRunner(tmp).predict(crops) - ref)))
        parity["onnx"] = {"max_abs_diff": diff, "n_crops": len(crops)}
        if not diff <= GRADER_PARITY_MAX_DIFF:
            raise ModelError(f"{out / CNN_ONNX}: ONNX CNN differs from PyTorch by {diff:.2e}")
        return ParityReport(1.0, 1.0, diff, len(crops), (64, 32), 1.0, True)

    _checked_export(out / CNN_ONNX, lambda tmp: export_cnn_onnx(net, tmp), check_onnx)
    files.append(out / CNN_ONNX)
    if coreml:
        try:
            import coremltools as ct
        except ImportError as exc:
            raise MissingDependencyError("coremltools", "export") from exc
        if predict is None:
            predict = platform.system() == "Darwin"

        def write_coreml(tmp: Path) -> None:
            sink = io.StringIO()
            try:
                with (
                    warnings.catch_warnings(),
                    contextlib.redirect_stdout(sink),
                    contextlib.redirect_stderr(sink),
                ):
                    warnings.simplefilter("ignore")
                    traced = torch.jit.trace(net, (torch.from_numpy(crops[:1]),), check_trace=False)
                    ml = ct.convert(
                        traced,
                        inputs=[ct.TensorType(name="crop", shape=(1, 3, 32, 64))],
                        outputs=[ct.TensorType(name="tender_probability")],
                        convert_to="mlprogram",
                        minimum_deployment_target=ct.target.iOS16,
                        compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
                    )
            except Exception as exc:  # coremltools raises many types
                raise ModelError(
                    f"{out}: Core ML conversion of the grader CNN failed ({_one_line(exc)})"
                ) from exc
            ml.short_description = "OkraInsight pod grader: tender probability of one masked pod crop"
            ml.input_description["crop"] = (
                "pod crop (1, 3, 32, 64) RGB 0..1, background 0, long axis horizontal"
            )
            ml.output_description["tender_probability"] = "probability that the pod is tender, (1, 1)"
            ml.save(str(tmp))

        def check_coreml(tmp: Path) -> ParityReport:
            entry: dict[str, Any] = {"spec": _validate_cnn_coreml(tmp)}
            parity["coreml"] = entry
            if not predict:
                entry["parity_checked"] = "spec validated only (Core ML prediction needs macOS)"
                return ParityReport(float("nan"), float("nan"), float("nan"), 0, (64, 32), 1.0, True)
            ml = ct.models.MLModel(str(tmp))
            got = np.array(
                [
                    float(np.asarray(ml.predict({"crop": c[None]})["tender_probability"]).reshape(-1)[0])
                    for c in crops
                ]
            )
            diff = float(np.max(np.abs(got - ref)))
            limit = 2e-3 if fp16 else GRADER_PARITY_MAX_DIFF * 10
            entry.update(max_abs_diff=diff, n_crops=len(crops), parity_checked="Core ML prediction")
            if not diff <= limit:
                raise ModelError(f"{out / 'cnn.mlpackage'}: Core ML CNN differs from PyTorch by {diff:.2e}")
            return ParityReport(1.0, 1.0, diff, len(crops), (64, 32), 1.0, True)

        _checked_export(out / "cnn.mlpackage", write_coreml, check_coreml)
        files.append(out / "cnn.mlpackage")
    # The okra-likeness CNN of the gate (when the grader has one) travels as it is.
    for name in (GRADER_FILE, GRADER_ONNX, CNN_WEIGHTS, OKRA_CNN_ONNX, OKRA_CNN_WEIGHTS):
        if (src / name).is_file():
            atomic_write_bytes(out / name, (src / name).read_bytes())
            files.append(out / name)
    load_grader(out)  # the written folder loads (card + cnn.onnx)
    return GraderExport(out, files, parity)


def runner_for(path: str | os.PathLike[str], fmt: str, *, threads: int = 1) -> Runner | None:
    """The runner of an exported file on this machine, or None (Core ML off macOS)."""
    import platform

    if fmt == "onnx":
        return onnx_runner(path, threads=threads)
    if fmt == "executorch":
        return executorch_runner(path, threads=threads)
    if fmt == "torchscript":
        return torchscript_runner(path)
    if fmt == "coreml" and platform.system() == "Darwin":
        return coreml_runner(path)
    return None


__all__ = [
    "FORMAT_SUFFIX",
    "MAX_DROP_POINTS",
    "ExportResult",
    "GRADER_PARITY_MAX_DIFF",
    "GraderExport",
    "export_grader",
    "grader_parity_crops",
    "coreml_metadata",
    "coreml_runner",
    "executorch_runner",
    "export_coreml",
    "export_executorch",
    "export_model",
    "export_onnx_reduced",
    "export_torchscript",
    "load_export_source",
    "make_coreml_wrapper",
    "mask_iou",
    "read_executorch_metadata",
    "read_torchscript_metadata",
    "rendered_split",
    "runner_for",
    "torchscript_runner",
    "validate_coreml_spec",
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
