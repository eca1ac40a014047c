"""Checkpoints that carry their own metadata: weights (safetensors) + a JSON card.

A *model folder* holds::

    card.json           the ModelCard below (pure JSON, readable without torch)
    model.safetensors   the student's state dict (never pickled)
    model.onnx          optional: the exported ONNX (uint8 image in, probability out)

The runtime, the exporter, the web page and the benchmarks read the same card, so
pre-processing is defined once: ``x = (pixel / 255 - mean) / std`` per RGB channel,
then the network, then ``sigmoid``; a pixel is okra where probability >= threshold.

This module imports torch only inside the functions that need it, so the
torch-free runtime can read cards.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from okrainsight import __version__
from okrainsight.errors import ModelError
from okrainsight.flips import check_flips
from okrainsight.hysteresis import check_seed_threshold
from okrainsight.imageio import atomic_output, atomic_write_text
from okrainsight.tiling import DEFAULT_ZOOMS, check_zooms

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
CARD_FORMAT = "okrainsight-model/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelCard:
    """Everything needed to rebuild, feed and judge a model.

    Attributes:
        arch: registered student name (see :func:`okrainsight.students.list_students`).
        arch_kwargs: keyword arguments given to the builder.
        input_size: ``(width, height)`` in pixels the model was trained and exported at.
        mean, std: per-channel RGB normalisation applied to ``pixel / 255``.
        threshold: probability at or above which a pixel is okra.
        seed_threshold: None, or hysteresis (:mod:`okrainsight.hysteresis`): a region of
            ``probability >= threshold`` is okra only if some pixel of it reaches
            ``seed_threshold`` (``threshold < seed_threshold < 1``).
        zooms: how the runtime tiles a photo (:mod:`okrainsight.tiling`): ``1`` = the largest tiles of
            ``input_size``'s shape inside the photo, ``2`` = half that size, ``0`` = the whole photo
            squeezed into ``input_size``; the probabilities of several zooms are averaged.
        flips: mirror images whose probabilities the runtime averages in (:mod:`okrainsight.flips`:
            ``"h"``, ``"v"``, ``"hv"``); empty (the default): the network runs once per tile.
        labels: class names, background first.
        name: human-readable model name.
        data_fingerprint: hash of the training data (see the trainer), or None.
        teacher: provenance of the training labels (teacher name, checkpoint hash ...).
        metrics: evaluation results, e.g. ``{"val_iou": 0.91}``.
        version: okrainsight version that wrote the card.
        created: ISO-8601 UTC time the card was written.
        extra: anything else (training config, notes).
    """

    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    threshold: float = 0.5
    seed_threshold: float | None = None
    zooms: tuple[float, ...] = DEFAULT_ZOOMS
    flips: tuple[str, ...] = ()
    labels: tuple[str, ...] = ("background", "okra")
    name: str = ""
    data_fingerprint: str | None = None
    teacher: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = __version__
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = CARD_FORMAT
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["labels"] = list(self.labels)
        d["zooms"] = list(self.zooms)
        d["flips"] = list(self.flips)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "card") -> ModelCard:
        """Build a card from its JSON form; :class:`ModelError` naming ``source`` if invalid."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: a model card must be a JSON object")
        fmt = data.get("format", CARD_FORMAT)
        if fmt != CARD_FORMAT:
            raise ModelError(f"{source}: unsupported card format {fmt!r} (expected {CARD_FORMAT!r})")
        if not isinstance(data.get("arch"), str) or not data["arch"]:
            raise ModelError(f"{source}: the card has no 'arch' (student architecture name)")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("arch_kwargs", "metrics", "extra"):
            if key in kwargs and not isinstance(kwargs[key], dict):
                raise ModelError(f"{source}: invalid card field ({key} must be a JSON object)")
        try:
            if "input_size" in kwargs:
                w, h = (int(v) for v in kwargs["input_size"])
                kwargs["input_size"] = (w, h)
            for key in ("mean", "std"):
                if key in kwargs:
                    vals = tuple(float(v) for v in kwargs[key])
                    if len(vals) != 3:
                        raise ValueError(f"{key} needs 3 values")
                    kwargs[key] = vals
            if "labels" in kwargs:
                kwargs["labels"] = tuple(str(v) for v in kwargs["labels"])
            if "threshold" in kwargs:
                kwargs["threshold"] = float(kwargs["threshold"])
            if "zooms" in kwargs:
                kwargs["zooms"] = check_zooms(kwargs["zooms"])
            if "flips" in kwargs:
                kwargs["flips"] = check_flips(kwargs["flips"])
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid card field ({exc})") from exc
        if not 0.0 < kwargs.get("threshold", 0.5) < 1.0:
            raise ModelError(f"{source}: threshold must lie strictly between 0 and 1")
        try:
            kwargs["seed_threshold"] = check_seed_threshold(
                kwargs.get("threshold", 0.5), kwargs.get("seed_threshold")
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid card field ({exc})") from exc
        return cls(**kwargs)


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """The model folder for ``path``: a folder with ``card.json``, or a file inside one."""
    p = Path(path)
    if p.is_dir():
        if (p / CARD_FILE).is_file():
            return p
        raise ModelError(f"{p}: no {CARD_FILE} in this folder; is it a model folder or training run?")
    if p.is_file():
        if (p.parent / CARD_FILE).is_file():
            return p.parent
        raise ModelError(f"{p}: no {CARD_FILE} beside this file; models travel with their card")
    raise ModelError(f"{p}: no such model file or folder")


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read the card of a model folder (or of a file inside it). Needs no torch."""
    d = resolve_model_dir(path)
    src = d / CARD_FILE
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{src}: not valid JSON ({exc})") from exc
    return ModelCard.from_dict(data, source=str(src))


def save_card(directory: str | os.PathLike[str], card: ModelCard, *, indent: int | None = 2) -> Path:
    """Write ``card.json`` atomically into ``directory``; fills ``created`` if empty. ``indent=None``
    writes it on one line (the built-in model's card, whose nested training history counts
    against the package's 2 MB)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if not card.created:
        card.created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    out = d / CARD_FILE
    separators = (",", ":") if indent is None else None
    text = json.dumps(card.to_dict(), indent=indent, separators=separators, sort_keys=True)
    atomic_write_text(out, text + "\n")
    return out


def save_checkpoint(
    directory: str | os.PathLike[str], model: Any, card: ModelCard, *, card_indent: int | None = 2
) -> Path:
    """Save ``model``'s state dict as safetensors plus ``card`` into ``directory``; return the folder
    (``card_indent``: see :func:`save_card`)."""
    from safetensors.torch import save as st_save

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    blob = st_save(state, metadata={"format": CARD_FORMAT, "arch": card.arch})
    with atomic_output(d / WEIGHTS_FILE) as fh:
        fh.write(blob)
    save_card(d, card, indent=card_indent)
    return d


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str = "cpu") -> tuple[Any, ModelCard]:
    """Rebuild the student named by the card and load its safetensors weights (no unpickling).

    Returns:
        ``(model, card)`` with the model in eval mode on ``map_location``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from okrainsight.students import create_student

    d = resolve_model_dir(path)
    card = load_card(d)
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{d}: no {WEIGHTS_FILE}; this model folder has a card but no weights")
    try:
        model = create_student(card.arch, **card.arch_kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{d / CARD_FILE}: arch_kwargs do not fit architecture {card.arch!r} ({exc})"
        ) from exc
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights}: not a readable safetensors file ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"{weights}: weights do not fit architecture {card.arch!r}: {first}") from exc
    model.to(map_location).eval()
    return model, card
