"""OkraUNetTiny: a small U-Net on a MobileNetV3-Small-like encoder, decoding to stride 2.

A fast student designed for this project, so that fine detail (the ridges along a
pod, the tapered tip, the calyx cap) survives: the encoder is a stem convolution and
MobileNetV3-Small's inverted-residual blocks (depthwise-separable, squeeze-excitation,
hard-swish) down to stride 32; an image-level gate (global average -> 1x1 -> sigmoid,
as in LR-ASPP) adds whole-image context; the decoder goes back up through the skips
at strides 16, 8, 4 and 2, each step a 1x1 convolution, a bilinear resize to the
skip's exact size, the sum with the 1x1-projected skip and a depthwise-separable
convolution; a 1x1 classifier at stride 2 is resized to the input size.

Export-friendly: fixed control flow, every resize is ``F.interpolate(size=...)`` from
tensor shapes (bilinear, align_corners=False); exports to ONNX opset 17, Core ML and
ExecuTorch. Any input size works (odd ones too).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops.misc import Conv2dNormActivation

from okrainsight.students.registry import register_student

_norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)

# (input, kernel, expanded, output, squeeze-excite, activation, stride) at width 1.0;
# grouped by the stride of the stage's output: 4, 8, 16, 32 (MobileNetV3-Small's blocks).
_ENCODER: tuple[tuple[tuple[int, int, int, int, bool, str, int], ...], ...] = (
    ((16, 3, 16, 16, True, "RE", 2),),
    ((16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1)),
    (
        (24, 5, 96, 40, True, "HS", 2),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1),
        (48, 5, 144, 48, True, "HS", 1),
    ),
    (
        (48, 5, 144, 48, True, "HS", 2),  # MobileNetV3-Small's "reduced tail": half the channels
        (48, 5, 288, 48, True, "HS", 1),
        (48, 5, 288, 48, True, "HS", 1),
    ),
)


class SepConv(nn.Sequential):
    """Depthwise 3x3 + BatchNorm + ReLU, then pointwise 1x1 + BatchNorm + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            Conv2dNormActivation(cin, cin, 3, groups=cin, norm_layer=_norm, activation_layer=nn.ReLU),
            Conv2dNormActivation(cin, cout, 1, norm_layer=_norm, activation_layer=nn.ReLU),
        )


class UpBlock(nn.Module):
    """One decoder step: 1x1 to ``cout`` at the low resolution, bilinear resize to ``skip``'s
    exact size, add the 1x1-projected skip, ReLU, then a :class:`SepConv`.

    Reducing channels before resizing and adding instead of concatenating keeps the
    work at high resolution small.
    """

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.top = Conv2dNormActivation(cin, cout, 1, norm_layer=_norm, activation_layer=None)
        self.lateral = Conv2dNormActivation(cskip, cout, 1, norm_layer=_norm, activation_layer=None)
        self.refine = SepConv(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.top(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(F.relu(x + self.lateral(skip)))


class OkraUNetTiny(nn.Module):
    """Float ``(N, 3, H, W)`` normalised RGB -> okra logits ``(N, 1, H, W)``, any ``H, W``.

    Args:
        width: channel multiplier of the encoder (1.0 = MobileNetV3-Small's first stages).
        decoder: channels of the decoder at strides 16, 8, 4 and 2.
    """

    def __init__(self, width: float = 1.0, decoder: tuple[int, int, int, int] = (48, 32, 24, 16)) -> None:
        super().__init__()
        if len(decoder) != 4:
            raise ValueError("decoder needs 4 channel counts (strides 16, 8, 4, 2)")

        def cfg(c: tuple[int, int, int, int, bool, str, int]) -> InvertedResidualConfig:
            return InvertedResidualConfig(c[0], c[1], c[2], c[3], c[4], c[5], c[6], 1, width)

        stem_ch = InvertedResidualConfig.adjust_channels(16, width)
        self.stem = Conv2dNormActivation(
            3, stem_ch, 3, stride=2, norm_layer=_norm, activation_layer=nn.Hardswish
        )
        self.stages = nn.ModuleList(
            [nn.Sequential(*[InvertedResidual(cfg(c), _norm) for c in stage]) for stage in _ENCODER]
        )
        chans = [stem_ch] + [cfg(stage[-1]).out_channels for stage in _ENCODER]  # strides 2 ... 32
        deep = chans[4]
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(deep, deep, 1), nn.Hardsigmoid())
        d16, d8, d4, d2 = (int(c) for c in decoder)
        self.up16 = UpBlock(deep, chans[3], d16)
        self.up8 = UpBlock(d16, chans[2], d8)
        self.up4 = UpBlock(d8, chans[1], d4)
        self.up2 = UpBlock(d4, chans[0], d2)
        self.head = nn.Conv2d(d2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2 = self.stem(x)
        s4 = self.stages[0](s2)
        s8 = self.stages[1](s4)
        s16 = self.stages[2](s8)
        s32 = self.stages[3](s16)
        s32 = s32 * self.gate(s32)
        h = self.up16(s32, s16)
        h = self.up8(h, s8)
        h = self.up4(h, s4)
        h = self.up2(h, s2)
        return F.interpolate(self.head(h), size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_student("okra_unet_tiny")
def okra_unet_tiny(
    *, width: float = 1.0, decoder: tuple[int, int, int, int] | list[int] = (48, 32, 24, 16)
) -> OkraUNetTiny:
    """Small U-Net on a MobileNetV3-Small-like encoder (see :class:`OkraUNetTiny`)."""
    return OkraUNetTiny(width=width, decoder=tuple(decoder))  # type: ignore[arg-type]
