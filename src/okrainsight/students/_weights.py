"""Loading user-supplied ImageNet backbone weights from a local file (never downloaded).

The file is a MobileNetV3 classification state dict as torchvision saves it (keys
``features.<i>....`` and ``classifier....``), stored either as safetensors or as a
``torch.save`` file, which is read with ``weights_only=True`` (no arbitrary unpickling).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from okrainsight.errors import ModelError


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (``.safetensors`` or a torch file); :class:`ModelError` on failure."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: backbone weights file not found (nothing is downloaded; give a local file)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p), device="cpu")
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any reader failure is a bad file for the user)
        raise ModelError(f"{p}: not a readable state-dict file ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{p}: does not hold a state dict of tensors")
    return state


def load_backbone_weights(
    backbone: nn.Module, path: str | os.PathLike[str], *, prefix: str = "features."
) -> None:
    """Load the ``prefix``-ed entries of the state dict at ``path`` into ``backbone``.

    ``backbone`` holds the feature layers under the names ``"0"``, ``"1"``, ... (as
    torchvision's ``IntermediateLayerGetter`` or ``features`` ``Sequential`` do). Layers
    after the last one ``backbone`` keeps (and the classifier) are ignored; every
    parameter and buffer of ``backbone`` must be present with the same shape.

    Raises:
        ModelError: the file is missing, unreadable, or does not fit ``backbone``.
    """
    state = read_state_dict(path)
    own = backbone.state_dict()
    picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    missing = [k for k in own if k not in picked]
    wrong = [k for k in own if k in picked and picked[k].shape != own[k].shape]
    if missing or wrong:
        what = (
            f"{len(missing)} missing entries (e.g. {prefix}{missing[0]})"
            if missing
            else f"shape mismatch at {prefix}{wrong[0]}: {tuple(picked[wrong[0]].shape)} vs "
            f"{tuple(own[wrong[0]].shape)}"
        )
        raise ModelError(f"{path}: backbone weights do not fit this architecture: {what}")
    backbone.load_state_dict({k: picked[k] for k in own}, strict=True)
