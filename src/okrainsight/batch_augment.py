"""Augment whole training batches on the training device (``augment_on: device``).

The loader's per-image augmentation (:func:`okrainsight.torchdata.build_transform`, about
10-15 ms of CPU per image) starves a GPU: a lent H100 with 16 cores trained the default
student at about 350 images per second with the GPU 30% busy. With ``augment_on: device``
the loader only decodes (and, with probability ``jpeg``, re-encodes) each image at a fixed
*canvas* size, and :func:`augment_batch` draws the same kinds of change as the loader's
transform for a whole batch at once, on the GPU (or the CPU in tests):

* geometry, one sampling grid per image (``torch.nn.functional.affine_grid``): a random
  rotation with a 0.85-1.15 zoom about the centre (probability 0.5, up to ``rotation``
  degrees), a random resized crop (area share ``scale``, aspect 3:4 to 4:3) scaled to the
  network input, horizontal and vertical flips. The image and the soft map are sampled
  bilinearly, the hard mask by nearest neighbour; outside the photo all three are 0;
* photometry (image only; no colour change without ``color_jitter``, as in the loader):
  with probability 0.8 brightness, contrast and saturation factors in
  ``[1 - color_jitter, 1 + color_jitter]`` and a hue turn of up to ``hue`` of a full turn
  (a rotation of the YIQ chroma plane, close to torchvision's HSV hue shift); a Gaussian
  blur (5x5, sigma 0.1-1.5, probability ``blur``), Gaussian noise (sigma ``noise``,
  probability 0.5), then normalisation.

Coordinates: images are ``(N, C, H, W)``, pixel centres at ``align_corners=False``
positions of ``grid_sample``. Unlike the loader's resize, the bilinear sampling has no
antialiasing (renders shrink by at most about 1.5x into a 256x256 input). Under DDP each
process draws from its own generator (:func:`rank_seed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from okrainsight.torchdata import AugmentConfig

#: RGB -> YIQ (rows Y, I, Q); the hue turn rotates the (I, Q) plane.
_RGB2YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float32
)
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _luma(img: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` luma (YIQ's Y) of float RGB ``(N, 3, H, W)``."""
    return torch.einsum("c,nchw->nhw", _RGB2YIQ[0].to(img.device, img.dtype), img)[:, None]


def rank_seed(seed: int, rank: int) -> int:
    """Seed of the device augmentation of process ``rank`` (DDP): one stream per rank, all repeatable.

    ``seed_everything`` gives every rank the same torch seed; without this every GPU would
    draw the same crops, flips and colours for its share of the batch.
    """
    return (int(seed) * 1_000_003 + 7_919 * (int(rank) + 1)) % (2**63 - 1)


def _uniform(
    n: int, low: float, high: float, gen: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def _chance(n: int, p: float, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def sampling_grid(
    n: int,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    augment: AugmentConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random geometry for ``n`` images: ``(N, out_h, out_w, 2)`` grid for ``grid_sample``.

    Input pixel ``(x, y)`` of an ``in_hw`` image maps to normalised ``(2x + 1) / W - 1``
    (``align_corners=False``); the crop is drawn in pixels, so rotations keep right angles.
    """
    device = torch.device(device)
    (H, W), (h, w) = in_hw, out_hw
    a = augment
    # random resized crop: area share s, aspect r (width / height), centre inside the photo
    s = _uniform(n, float(a.scale[0]), float(a.scale[1]), generator, device)
    r = torch.exp(_uniform(n, math.log(3 / 4), math.log(4 / 3), generator, device))
    cw = torch.sqrt(s * W * H * r).clamp(max=W)
    ch = torch.sqrt(s * W * H / r).clamp(max=H)
    cx = (torch.rand(n, generator=generator, device=device) - 0.5) * (W - cw)
    cy = (torch.rand(n, generator=generator, device=device) - 0.5) * (H - ch)
    fx = torch.where(_chance(n, a.hflip, generator, device), -1.0, 1.0)
    fy = torch.where(_chance(n, a.vflip, generator, device), -1.0, 1.0)
    # rotation and zoom about the centre (as RandomAffine before the crop), half of the time
    turn = _chance(n, 0.5 if a.rotation > 0 else 0.0, generator, device)
    theta = torch.where(turn, _uniform(n, -a.rotation, a.rotation, generator, device), 0.0) * (math.pi / 180)
    zoom = torch.where(turn, _uniform(n, 0.85, 1.15, generator, device), 1.0)
    cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
    # output normalised u -> crop pixels p = c + D u -> photo pixels q = R(-theta) p / zoom -> normalised
    dx, dy = fx * cw / 2, fy * ch / 2
    mat = torch.zeros(n, 2, 3, device=device)
    mat[:, 0, 0] = cos * dx * (2 / W)
    mat[:, 0, 1] = sin * dy * (2 / W)
    mat[:, 0, 2] = (cos * cx + sin * cy) * (2 / W)
    mat[:, 1, 0] = -sin * dx * (2 / H)
    mat[:, 1, 1] = cos * dy * (2 / H)
    mat[:, 1, 2] = (-sin * cx + cos * cy) * (2 / H)
    return F.affine_grid(mat, [n, 1, h, w], align_corners=False)


def _blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image 5x5 Gaussian blur of ``(N, C, H, W)`` float ``img`` (sigma 0: unchanged)."""
    n, c, h, w = img.shape
    x = torch.arange(-2, 3, device=img.device, dtype=img.dtype)
    k1 = torch.exp(-(x[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    k1 = torch.where((sigma > 0)[:, None], k1, (x == 0).to(img.dtype)[None])
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, dim=0)[:, None]  # (N*C, 1, 5, 5)
    out = F.conv2d(F.pad(img.reshape(1, n * c, h, w), (2, 2, 2, 2), mode="reflect"), k2, groups=n * c)
    return out.reshape(n, c, h, w)


def photometric(
    img: torch.Tensor, augment: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Colour jitter, blur and noise of float RGB ``img`` ``(N, 3, H, W)`` in ``[0, 1]``; same range out."""
    n, device, a = img.shape[0], img.device, augment
    if a.color_jitter > 0:  # as the loader: no ColorJitter (hue included) without color_jitter
        on = _chance(n, 0.8, generator, device)
        cj = float(a.color_jitter)

        def factor() -> torch.Tensor:
            return torch.where(on, _uniform(n, 1 - cj, 1 + cj, generator, device), 1.0)[:, None, None, None]

        img = (img * factor()).clamp(0, 1)  # brightness
        mean = _luma(img).mean((2, 3), keepdim=True)
        img = ((img - mean) * factor() + mean).clamp(0, 1)  # contrast about the image's mean luma
        grey = _luma(img)
        img = ((img - grey) * factor() + grey).clamp(0, 1)  # saturation about each pixel's luma
        if a.hue > 0:
            angle = torch.where(on, _uniform(n, -a.hue, a.hue, generator, device), 0.0) * (2 * math.pi)
            rot = torch.zeros(n, 3, 3, device=device)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
            rot[:, 2, 1], rot[:, 2, 2] = torch.sin(angle), torch.cos(angle)
            mix = _YIQ2RGB.to(device)[None] @ rot @ _RGB2YIQ.to(device)[None]  # (N, 3, 3) RGB -> RGB
            img = torch.einsum("nij,njhw->nihw", mix, img).clamp(0, 1)
    if a.blur > 0:
        sigma = torch.where(
            _chance(n, a.blur, generator, device), _uniform(n, 0.1, 1.5, generator, device), 0.0
        )
        img = _blur(img, sigma)
    if a.noise > 0:
        on = _chance(n, 0.5, generator, device)[:, None, None, None]
        noise = torch.randn(img.shape, generator=generator, device=device) * a.noise
        img = torch.where(on, (img + noise).clamp(0, 1), img)
    return img


def augment_batch(
    image: torch.Tensor,
    mask: torch.Tensor,
    soft: torch.Tensor,
    out_hw: tuple[int, int],
    augment: AugmentConfig,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment one batch where it lies (see the module doc).

    Args:
        image: ``(N, 3, H, W)`` uint8 RGB.
        mask: ``(N, 1, H, W)`` hard mask, nonzero = okra (any dtype).
        soft: ``(N, 1, H, W)`` teacher probability, uint8 ``0-255`` or float ``[0, 1]``.
        out_hw: network input ``(height, width)``.
        augment: strengths (:class:`AugmentConfig`; ``jpeg`` is the loader's job).
        mean, std: normalisation of ``pixel / 255``.
        generator: optional ``torch.Generator`` on the batch's device, for repeatable draws.

    Returns:
        ``(image, mask, soft)``: normalised float32 ``(N, 3, h, w)``, float32 ``{0, 1}``
        ``(N, 1, h, w)`` and float32 ``[0, 1]`` ``(N, 1, h, w)``.
    """
    n, _, H, W = image.shape
    device = image.device
    grid = sampling_grid(n, (H, W), out_hw, augment, generator, device)
    img = F.grid_sample(image.float() / 255, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    hard = F.grid_sample((mask > 0).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    prob = soft.float() / 255 if soft.dtype == torch.uint8 else soft.float()
    prob = F.grid_sample(prob, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)
    img = photometric(img.clamp(0, 1), augment, generator)
    m = torch.tensor(list(mean), device=device, dtype=img.dtype)[None, :, None, None]
    s = torch.tensor(list(std), device=device, dtype=img.dtype)[None, :, None, None]
    return (img - m) / s, hard, prob


__all__ = ["augment_batch", "photometric", "rank_seed", "sampling_grid"]
