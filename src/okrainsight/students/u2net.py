"""U-2-Net and U-2-Net-P, written here after the published architecture.

Qin et al., "U^2-Net: Going Deeper with Nested U-Structure for Salient Object
Detection", Pattern Recognition 2020. Six encoder stages and five decoder stages of
Residual U-blocks (RSU-7 ... RSU-4, and the dilated RSU-4F), a 3x3 side output on each
decoder stage and the last encoder stage, and a 1x1 convolution fusing the six side
outputs. ``u2net`` has about 44.0 M parameters, ``u2netp`` about 1.13 M.

Differences from the reference code: outputs are logits (no sigmoid; apply it, or
use BCE-with-logits), and every resize goes to the exact size of the tensor it
meets, so any input size works, odd ones included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from okrainsight.students.registry import register_student


def _up_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Module):
    """3x3 convolution (dilation ``d``, size preserving) + BatchNorm + ReLU ("REBNCONV")."""

    def __init__(self, cin: int, cout: int, d: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=d, dilation=d)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class RSU(nn.Module):
    """Residual U-block of height ``depth`` (RSU-4 ... RSU-7): a small U-Net plus a residual.

    The encoder halves the size ``depth - 2`` times (max-pool, ceil mode); the bottom
    uses a dilation-2 convolution; the decoder resizes to each skip's exact size.
    """

    def __init__(self, depth: int, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.conv_in = ConvBNReLU(cin, cout)
        self.enc = nn.ModuleList([ConvBNReLU(cout, mid)] + [ConvBNReLU(mid, mid) for _ in range(depth - 2)])
        self.bottom = ConvBNReLU(mid, mid, d=2)
        self.dec = nn.ModuleList(
            [ConvBNReLU(2 * mid, mid) for _ in range(depth - 2)] + [ConvBNReLU(2 * mid, cout)]
        )
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = self.conv_in(x)
        skips = []
        h = xin
        for i, conv in enumerate(self.enc):
            if i > 0:
                h = self.pool(h)
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for i, conv in enumerate(self.dec):
            skip = skips[-1 - i]
            if i > 0:
                h = _up_like(h, skip)
            h = conv(torch.cat((h, skip), 1))
        return h + xin


class RSU4F(nn.Module):
    """RSU-4F: the RSU-4 shape with dilations 1, 2, 4, 8 instead of pooling (size preserved)."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.conv_in = ConvBNReLU(cin, cout)
        self.enc = nn.ModuleList([ConvBNReLU(cout, mid, 1), ConvBNReLU(mid, mid, 2), ConvBNReLU(mid, mid, 4)])
        self.bottom = ConvBNReLU(mid, mid, 8)
        self.dec = nn.ModuleList(
            [ConvBNReLU(2 * mid, mid, 4), ConvBNReLU(2 * mid, mid, 2), ConvBNReLU(2 * mid, cout, 1)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = self.conv_in(x)
        skips = []
        h = xin
        for conv in self.enc:
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for i, conv in enumerate(self.dec):
            h = conv(torch.cat((h, skips[-1 - i]), 1))
        return h + xin


def _block(kind: int, cin: int, mid: int, cout: int) -> nn.Module:
    """``kind`` 7, 6, 5, 4 -> RSU of that height; 0 -> RSU-4F."""
    return RSU4F(cin, mid, cout) if kind == 0 else RSU(kind, cin, mid, cout)


class U2Net(nn.Module):
    """U-2-Net: float ``(N, 3, H, W)`` normalised RGB -> okra logits ``(N, 1, H, W)``, any ``H, W``.

    Args:
        enc: per encoder stage ``(kind, in, mid, out)``, six stages (kind 0 = RSU-4F).
        dec: per decoder stage, deepest first, five stages.
    """

    def __init__(self, enc: list[tuple[int, int, int, int]], dec: list[tuple[int, int, int, int]]) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([_block(*s) for s in enc])
        self.decoder = nn.ModuleList([_block(*s) for s in dec])
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        # side outputs: decoder stages from shallowest to deepest, then the last encoder stage
        side_in = [s[3] for s in reversed(dec)] + [enc[-1][3]]
        self.side = nn.ModuleList([nn.Conv2d(c, 1, 3, padding=1) for c in side_in])
        self.fuse = nn.Conv2d(len(side_in), 1, 1)

    def _outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        h = x
        for i, stage in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = stage(h)
            feats.append(h)
        dec_feats = []
        for i, stage in enumerate(self.decoder):
            skip = feats[-2 - i]
            h = stage(torch.cat((_up_like(h, skip), skip), 1))
            dec_feats.append(h)
        ordered = list(reversed(dec_feats)) + [feats[-1]]  # side1 (full size) ... side6 (deepest)
        sides = [_up_like(conv(f), x) for conv, f in zip(self.side, ordered, strict=True)]
        fused = self.fuse(torch.cat(sides, 1))
        return [fused, *sides]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused logits ``(N, 1, H, W)``."""
        return self._outputs(x)[0]

    def forward_train(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[fused, side1, ..., side6]`` logits, each ``(N, 1, H, W)``, for deep supervision."""
        return self._outputs(x)


@register_student("u2net")
def u2net() -> U2Net:
    """Full U-2-Net (about 44.0 M parameters, 176 MB at fp32)."""
    enc = [(7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512), (0, 512, 256, 512),
           (0, 512, 256, 512)]  # fmt: skip
    dec = [(0, 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64)]
    return U2Net(enc, dec)


@register_student("u2netp")
def u2netp() -> U2Net:
    """U-2-Net-P, the small variant (about 1.13 M parameters, 4.7 MB at fp32)."""
    enc = [
        (7, 3, 16, 64),
        (6, 64, 16, 64),
        (5, 64, 16, 64),
        (4, 64, 16, 64),
        (0, 64, 16, 64),
        (0, 64, 16, 64),
    ]
    dec = [(0, 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64), (7, 128, 16, 64)]
    return U2Net(enc, dec)
