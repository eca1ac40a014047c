"""LR-ASPP with a MobileNetV3-Large backbone (torchvision), one output class.

Re-wrapped so ``forward`` returns a plain logits tensor; parameter names match
torchvision's ``lraspp_mobilenet_v3_large`` (``backbone.*``, ``classifier.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large as _tv_lraspp

from okrainsight.students._weights import load_backbone_weights
from okrainsight.students.registry import register_student


class LRASPPMobileNetV3Large(nn.Module):
    """Float ``(N, 3, H, W)`` normalised RGB -> okra logits ``(N, 1, H, W)``, any ``H, W``."""

    def __init__(self, backbone_weights: str | None = None) -> None:
        super().__init__()
        tv = _tv_lraspp(weights=None, weights_backbone=None, num_classes=1)
        self.backbone = tv.backbone
        self.classifier = tv.classifier
        if backbone_weights is not None:
            load_backbone_weights(self.backbone, backbone_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_student("lraspp_mobilenet_v3_large")
def lraspp_mobilenet_v3_large(*, backbone_weights: str | None = None) -> LRASPPMobileNetV3Large:
    """LR-ASPP head on MobileNetV3-Large (about 3.2 M parameters).

    Args:
        backbone_weights: optional path to a local ImageNet MobileNetV3-Large state dict
            (safetensors or a torch file, keys ``features.*``); nothing is downloaded.
    """
    return LRASPPMobileNetV3Large(backbone_weights=backbone_weights)
