"""Average the weights of several trained models of one architecture (a "model soup").

Fine-tunes of one starting point (the same ``--init-from``) that differ only in their data or
their seed stay in one basin of the loss, and the plain mean of their weights usually scores at
least as well as each of them while varying less from run to run (Wortsman et al., "Model
soups", ICML 2022). The built-in default model's weights (v0.5, v0.6 with flip averaging, v0.7 and v0.8)
are such a mean (``docs/model-card.md``).
Averaging models trained from different starting points gives garbage: this module checks
that the architectures match, not that the starting point was shared.

Every floating-point tensor of the state dicts (weights and batch-norm running statistics) is
averaged with the given weights; integer buffers (batch-norm step counters) are taken from the
first model. The card keeps the first model's architecture, input, normalisation, threshold,
tiling and flips; its metrics are cleared (they described one model, not the mean), its data
fingerprint is derived from all of theirs, its teacher record is kept only when every source
has the same one, and ``extra`` holds only ``averaged_from``: per source its run folder's name,
weight, card name, fingerprint, metrics, teacher record and ``extra`` (training config, best
epoch ...). For a source that is itself a mean, ``extra`` keeps its own keys but its
``averaged_from`` is cut to the lineage: the tree of runs with each entry cut to run, weight,
name and fingerprint (see :func:`lineage`), so that a
mean of means stays small (the built-in model's package has a 2 MB budget) while still naming
every run it came from; those runs' folders hold their full cards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from okrainsight.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from okrainsight.errors import ModelError

#: Card fields that must agree for two models to be averaged.
MATCHING_FIELDS = ("arch", "arch_kwargs", "input_size", "mean", "std")


def _fingerprint(cards: Sequence[ModelCard], weights: Sequence[float]) -> str | None:
    """One fingerprint for the mean: a hash of the sources' fingerprints and weights, or None
    when any source has none."""
    parts = [c.data_fingerprint for c in cards]
    if any(p is None for p in parts):
        return None
    text = "|".join(f"{p}*{w:g}" for p, w in zip(parts, weights, strict=True))
    return "avg-sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


#: What :func:`lineage` keeps of each source of a nested mean.
LINEAGE_FIELDS = ("run", "weight", "name", "data_fingerprint")


def lineage(sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``averaged_from`` list ``sources`` cut to its tree of runs: per entry only
    :data:`LINEAGE_FIELDS`, plus ``averaged_from`` (cut the same way) when that entry was a mean
    itself. Weights stay relative to their own mean, as in the full cards."""
    out = []
    for src in sources:
        entry = {k: src[k] for k in LINEAGE_FIELDS if k in src}
        nested = (src.get("extra") or {}).get("averaged_from") or src.get("averaged_from")
        if nested:
            entry["averaged_from"] = lineage(nested)
        out.append(entry)
    return out


def _source_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """What a source's card ``extra`` contributes: all of it, unless the source is a mean, whose
    sources are cut to their lineage (:func:`lineage`)."""
    if not extra.get("averaged_from"):
        return extra
    return {**extra, "averaged_from": lineage(extra["averaged_from"])}


def average_checkpoints(
    paths: Sequence[str | os.PathLike[str]], weights: Sequence[float] | None = None
) -> tuple[Any, ModelCard]:
    """The weighted mean of the models in ``paths`` (model or run folders, see
    :func:`okrainsight.checkpoint.load_checkpoint`).

    Args:
        paths: two or more model folders of one architecture (same ``arch``, ``arch_kwargs``,
            ``input_size``, ``mean`` and ``std`` in their cards).
        weights: one non-negative weight per model (normalised to sum 1); None: equal weights.

    Returns:
        ``(model, card)``: the averaged student in eval mode on the CPU and its card (see the
        module docstring). Save them with :func:`okrainsight.checkpoint.save_checkpoint`.

    Raises:
        ModelError: fewer than two models, bad weights, or a model that does not match the first
            (the message names the folder and the field or tensor that differs).
    """
    import torch

    if len(paths) < 2:
        raise ModelError(f"averaging needs at least two models, got {len(paths)}")
    w = [1.0] * len(paths) if weights is None else [float(v) for v in weights]
    if len(w) != len(paths):
        raise ModelError(f"got {len(w)} weights for {len(paths)} models; give one weight per model")
    if any(v < 0 or not math.isfinite(v) for v in w) or sum(w) <= 0:
        raise ModelError(f"weights must be non-negative with a positive sum, got {w}")
    total = sum(w)
    w = [v / total for v in w]

    loaded = [load_checkpoint(p) for p in paths]
    base, card = loaded[0]
    states = [m.state_dict() for m, _ in loaded]
    for p, (_, other), state in zip(paths[1:], loaded[1:], states[1:], strict=True):
        for name in MATCHING_FIELDS:
            if getattr(other, name) != getattr(card, name):
                raise ModelError(
                    f"{p}: {name} {getattr(other, name)!r} differs from {paths[0]}'s "
                    f"{getattr(card, name)!r}; only models of one architecture can be averaged"
                )
        for key, ref in states[0].items():
            if key not in state or state[key].shape != ref.shape:
                raise ModelError(f"{p}: tensor {key!r} does not match {paths[0]}'s")

    mean: dict[str, torch.Tensor] = {}
    for key, ref in states[0].items():
        if ref.is_floating_point():
            acc = torch.zeros_like(ref, dtype=torch.float64)
            for wi, state in zip(w, states, strict=True):
                acc += wi * state[key].to(torch.float64)
            mean[key] = acc.to(ref.dtype)
        else:
            mean[key] = ref.clone()
    base.load_state_dict(mean)
    base.eval()

    cards = [c for _, c in loaded]
    sources = [
        {
            "run": Path(p).name,
            "weight": wi,
            "name": c.name,
            "data_fingerprint": c.data_fingerprint,
            "metrics": c.metrics,
            "teacher": c.teacher,
            "extra": _source_extra(c.extra),  # training config, best epoch, split; or a lineage
        }
        for p, wi, c in zip(paths, w, cards, strict=True)
    ]
    out = dataclasses.replace(
        card,
        metrics={},
        created="",
        data_fingerprint=_fingerprint(cards, w),
        teacher=card.teacher if all(c.teacher == card.teacher for c in cards) else None,
        extra={"averaged_from": sources},
    )
    return base, out


def average_models(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    weights: Sequence[float] | None = None,
) -> Path:
    """Average ``paths`` (see :func:`average_checkpoints`) and save the result as a model folder
    (``model.safetensors`` + ``card.json``) in ``out``; returns the folder."""
    target = Path(out).resolve()
    for p in paths:
        if Path(p).resolve() == target:
            raise ModelError(f"{out}: is one of the models being averaged; write the mean to a new folder")
    model, card = average_checkpoints(paths, weights)
    return save_checkpoint(out, model, card)
