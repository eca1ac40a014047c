"""OkraLRASPPSmall: LR-ASPP head on a reduced-width MobileNetV3-Small trunk.

A fast student designed for this project. The trunk is torchvision's
``mobilenet_v3_small`` features with a width multiplier (and optionally the halved
"reduced tail"); the head is LR-ASPP: the stride-16/32 features gated by a global
average (image-level context, which helps tell okra from other green vegetables),
upsampled and added to a linear classifier on the stride-8 features.

Export-friendly: fixed control flow, bilinear ``F.interpolate(size=...)`` taken from
the input's shape (align_corners=False); exports to ONNX opset 17, Core ML and ExecuTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.lraspp import LRASPPHead

from okrainsight.students._weights import load_backbone_weights
from okrainsight.students.registry import register_student


class OkraLRASPPSmall(nn.Module):
    """Float ``(N, 3, H, W)`` normalised RGB -> okra logits ``(N, 1, H, W)``, any ``H, W``.

    Args:
        width: channel multiplier of the MobileNetV3-Small trunk (1.0 = the ImageNet model).
        inter_channels: channels of the LR-ASPP high-level branch.
        reduced_tail: halve the channels of the last stage (as torchvision's ``reduced_tail``).
        dilated: keep the last stage at stride 16 (dilated) instead of 32.
        backbone_weights: optional path to a local ImageNet MobileNetV3-Small state dict
            (only fits ``width=1.0`` with the same tail); nothing is downloaded.
    """

    def __init__(
        self,
        width: float = 0.5,
        inter_channels: int = 64,
        reduced_tail: bool = False,
        dilated: bool = False,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        features = mobilenet_v3_small(
            weights=None, width_mult=width, reduced_tail=reduced_tail, dilated=dilated
        ).features
        strided = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
        stages = [0, *strided, len(features) - 1]
        low_pos, high_pos = stages[-4], stages[-1]  # stride 8, and the last layer
        low_ch = features[low_pos].out_channels
        high_ch = features[high_pos].out_channels
        self.backbone = IntermediateLayerGetter(
            features, return_layers={str(low_pos): "low", str(high_pos): "high"}
        )
        self.classifier = LRASPPHead(low_ch, high_ch, 1, inter_channels)
        if backbone_weights is not None:
            load_backbone_weights(self.backbone, backbone_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_student("okra_lraspp_small")
def okra_lraspp_small(
    *,
    width: float = 0.5,
    inter_channels: int = 64,
    reduced_tail: bool = False,
    dilated: bool = False,
    backbone_weights: str | None = None,
) -> OkraLRASPPSmall:
    """LR-ASPP on MobileNetV3-Small at ``width`` (see :class:`OkraLRASPPSmall`)."""
    return OkraLRASPPSmall(
        width=width,
        inter_channels=inter_channels,
        reduced_tail=reduced_tail,
        dilated=dilated,
        backbone_weights=backbone_weights,
    )
