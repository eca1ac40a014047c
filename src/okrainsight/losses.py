"""Training losses: BCE-with-logits + Dice on hard masks, distillation on soft teacher maps,
deep supervision over every side output, and hard-negative weighting.

Shapes: logits and targets are float ``(N, 1, H, W)``; hard targets hold 0/1, soft
targets the teacher's probability in [0, 1]. ``has_soft`` is ``(N,)`` float, 1 where
the sample carries a teacher map. Every function returns a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dice_loss(logits: Tensor, target: Tensor, *, smooth: float = 1.0) -> Tensor:
    """Soft Dice loss ``1 - (2*sum(p*t) + s) / (sum(p) + sum(t) + s)`` per sample, averaged.

    With ``smooth`` > 0 an empty target and an empty prediction give (almost) 0 loss,
    while any okra predicted on an empty target is penalised.
    """
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (prob * t).sum(1)
    denom = prob.sum(1) + t.sum(1)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def pixel_weights(
    logits: Tensor,
    target: Tensor,
    *,
    negative_image_weight: float = 1.0,
    false_positive_weight: float = 1.0,
) -> Tensor:
    """Per-pixel BCE weights ``(N, 1, H, W)`` for hard-negative mining (no gradient).

    Pixels of images whose mask is empty get ``negative_image_weight``; background
    pixels the model currently calls okra (probability >= 0.5) get
    ``false_positive_weight`` (the larger weight wins). Everything else weighs 1.
    """
    with torch.no_grad():
        w = torch.ones_like(target)
        if negative_image_weight != 1.0:
            empty = target.flatten(1).amax(1) <= 0
            w[empty] = float(negative_image_weight)
        if false_positive_weight != 1.0:
            fp = (logits.detach() >= 0) & (target < 0.5)
            w = torch.where(fp, torch.clamp(w, min=float(false_positive_weight)), w)
    return w


@dataclass
class LossConfig:
    """Weights of the loss terms (see :class:`SegmentationLoss`)."""

    bce_weight: float = 1.0
    dice_weight: float = 1.0
    soft_weight: float = 0.5
    negative_image_weight: float = 1.0
    false_positive_weight: float = 1.0


class SegmentationLoss(nn.Module):
    """``bce_w * BCE(hard) + dice_w * Dice(hard) + soft_w * BCE(soft)`` per output, summed over outputs.

    ``outputs`` is one logits tensor or a sequence (deep supervision: fused output
    and every side output); each is scored against the same targets and the
    per-output losses are **summed**, so every side head receives its own gradient.
    The distillation term uses only samples with ``has_soft == 1``.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def single(self, logits: Tensor, target: Tensor, soft: Tensor | None, has_soft: Tensor | None) -> dict:
        """The loss terms of one output: ``{"bce", "dice", "soft", "total"}`` (scalar tensors)."""
        cfg = self.config
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
        w = pixel_weights(
            logits,
            target,
            negative_image_weight=cfg.negative_image_weight,
            false_positive_weight=cfg.false_positive_weight,
        )
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / w.sum()
        dl = dice_loss(logits, target)
        total = cfg.bce_weight * bce + cfg.dice_weight * dl
        soft_term = logits.new_zeros(())
        if soft is not None and cfg.soft_weight > 0:
            sel = torch.ones(logits.shape[0], device=logits.device) if has_soft is None else has_soft
            sel = sel.to(logits.dtype).view(-1, 1, 1, 1)
            if float(sel.sum()) > 0:
                per = F.binary_cross_entropy_with_logits(logits, soft.to(logits.dtype), reduction="none")
                soft_term = (per * sel).sum() / (sel.sum() * per[0].numel())
                total = total + cfg.soft_weight * soft_term
        return {"bce": bce, "dice": dl, "soft": soft_term, "total": total}

    def forward(
        self,
        outputs: Tensor | Sequence[Tensor],
        target: Tensor,
        soft: Tensor | None = None,
        has_soft: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``(total, parts)``; ``parts`` holds the fused (first) output's terms, detached."""
        outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        if not outs:
            raise ValueError("no outputs to score")
        terms = [self.single(o, target, soft, has_soft) for o in outs]
        total = torch.stack([t["total"] for t in terms]).sum()
        parts = {k: v.detach() for k, v in terms[0].items()}
        parts["total"] = total.detach()
        return total, parts


__all__ = ["LossConfig", "SegmentationLoss", "dice_loss", "pixel_weights"]
