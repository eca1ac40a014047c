"""DeepLabV3 with a MobileNetV3-Large backbone: the original OkraInsight student.

torchvision's ``deeplabv3_mobilenet_v3_large`` with a one-class ``DeepLabHead`` and no
auxiliary head, re-wrapped so ``forward`` returns a plain logits tensor instead of a
dict. Parameter names match torchvision's (``backbone.*``, ``classifier.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large as _tv_deeplab

from okrainsight.students._weights import load_backbone_weights
from okrainsight.students.registry import register_student


class DeepLabV3MobileNetV3Large(nn.Module):
    """Float ``(N, 3, H, W)`` normalised RGB -> okra logits ``(N, 1, H, W)``, any ``H, W``."""

    def __init__(self, backbone_weights: str | None = None) -> None:
        super().__init__()
        tv = _tv_deeplab(weights=None, weights_backbone=None, num_classes=1, aux_loss=False)
        self.backbone = tv.backbone
        self.classifier = tv.classifier
        if backbone_weights is not None:
            load_backbone_weights(self.backbone, backbone_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)["out"]
        logits = self.classifier(feats)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_student("deeplabv3_mobilenet_v3_large")
def deeplabv3_mobilenet_v3_large(*, backbone_weights: str | None = None) -> DeepLabV3MobileNetV3Large:
    """The original student (about 11 M parameters, 42 MB at fp32).

    Args:
        backbone_weights: optional path to a local ImageNet MobileNetV3-Large state dict
            (safetensors or a torch file, keys ``features.*``); nothing is downloaded.
    """
    return DeepLabV3MobileNetV3Large(backbone_weights=backbone_weights)
