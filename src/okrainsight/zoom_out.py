"""Zoom-out augmentation: shrink a training image and fill the frame back with its own mirror image.

The random resized crop of :mod:`okrainsight.torchdata` only ever zooms in, so a student sees pods
no smaller than the renderer draws them. Market photographs taken from afar show pods smaller
still (the real basket pile_01: pods about 38 pixels long when the photo's shorter side is fed at
256, where the smallest rendered pile pods come out at 45-67), and every CPU fine-tune of v0.9 on
rendered scenes stopped finding that basket at zoom 1 while finding it at zoom 2.

:func:`zoom_out` resizes image, mask and soft map by ``factor`` and pads them back to their size
by reflection (OpenCV's ``BORDER_REFLECT_101``) at a random offset. The reflected border repeats
the scene, pods included, so a pile stays a pile to the frame's edges and the mask stays exact:
every mirrored pod is labelled as the pod it mirrors.
"""

from __future__ import annotations

import cv2
import numpy as np


def zoom_out(
    image: np.ndarray,
    mask: np.ndarray,
    soft: np.ndarray,
    factor: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, mask, soft)`` shrunk by ``factor`` and reflect-padded back to their size.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` uint8 (okra where > 0); resized with nearest neighbour, so it stays binary.
        soft: ``(H, W)`` float32 teacher probability, 0..1; resized bilinearly.
        factor: the new scale, 0.5..1 (1 returns the inputs unchanged); below 0.5 the reflection
            would have to repeat the border more than once.
        rng: picks where the shrunk picture lands inside the frame.

    Returns:
        Three arrays of the inputs' shapes and dtypes.
    """
    if not 0.5 <= factor <= 1.0:
        raise ValueError(f"zoom-out factor must lie in 0.5..1, got {factor}")
    h, w = image.shape[:2]
    if mask.shape != (h, w) or soft.shape != (h, w):
        raise ValueError(f"image {image.shape}, mask {mask.shape} and soft {soft.shape} do not match")
    sw, sh = max(1, int(round(w * factor))), max(1, int(round(h * factor)))
    if (sw, sh) == (w, h):
        return image, mask, soft
    small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
    small_soft = cv2.resize(soft.astype(np.float32), (sw, sh), interpolation=cv2.INTER_LINEAR)
    left, top = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
    pads = (top, h - sh - top, left, w - sw - left)

    def pad(a: np.ndarray) -> np.ndarray:
        return cv2.copyMakeBorder(a, *pads, cv2.BORDER_REFLECT_101)

    return pad(small), pad(small_mask), pad(small_soft)


__all__ = ["zoom_out"]
