"""The camera: exposure, colour temperature, blur, vignetting, noise and JPEG compression.

Applied once to the whole composed scene (so rendered pods and real photo
backgrounds share the same optics). Everything is drawn from the scene's random
generator, so a seed gives byte-identical output.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Rec. 601 luma weights of linear-ish RGB (the renderer's working space).
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def saturate(img: np.ndarray, gain: float) -> np.ndarray:
    """Scale the chroma of float RGB ``(H, W, 3)`` by ``gain`` about each pixel's luma (luma kept)."""
    luma = (img @ LUMA)[..., None]
    return luma + (img - luma) * np.float32(gain)


def apply_camera(img: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0) -> np.ndarray:
    """Turn a float32 ``(H, W, 3)`` RGB scene (about 0..1) into a uint8 photo.

    Knobs (each random per image): white balance shift (colour temperature; 15 % of photos a
    strong cool or warm cast, since renderer v11), exposure
    (+-0.5 stop typical), a "vivid" saturation boost (35 %, x1.15-1.6, as phone picture
    styles and shop-photo retouching do; since renderer v10), contrast curve, defocus blur
    (30 %), motion blur (12 %), vignetting (50 %), sensor noise, JPEG compression (70 %,
    quality 35..95).
    ``strength`` scales the degradations (0 = clean).
    """
    h, w = img.shape[:2]
    res = max(h, w) / 512.0
    wb = rng.normal(0, 0.04 * strength)
    if rng.random() < 0.15 * strength:  # v11: a strong cool or warm cast (shade, tungsten, cheap phones)
        wb += float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.12))
    gain = np.float32(2.0 ** rng.normal(0.05, 0.25 * strength))
    out = img * (np.array([1 + wb, 1.0, 1 - wb], np.float32) * gain)
    if rng.random() < 0.35 * strength:
        out = saturate(out, float(rng.uniform(1.15, 1.6)))
    if rng.random() < 0.25 * strength:
        sigma = rng.uniform(0.4, 1.6) * res
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if rng.random() < 0.12 * strength:
        n = int(rng.integers(3, 10) * res) | 1
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1.0)
        k = cv2.warpAffine(k, rot, (n, n))
        out = cv2.filter2D(out, -1, k / max(k.sum(), 1e-6))
    if rng.random() < 0.5 * strength:
        yy, xx = np.ogrid[0:h, 0:w]
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        out *= (1 - rng.uniform(0.05, 0.3) * (r2 / 2)).astype(np.float32)[..., None]
    sigma_n = rng.uniform(0.002, 0.025) * strength
    # Triangular noise (sum of two uniform bytes, unit variance): as good as Gaussian here, much faster.
    n = h * w * 3
    tri = np.frombuffer(rng.bytes(n), np.uint8).astype(np.float32) + np.frombuffer(rng.bytes(n), np.uint8)
    out += (tri.reshape(h, w, 3) - 255.0) * np.float32(sigma_n * np.sqrt(6.0) / 255.0)
    u8 = cv2.convertScaleAbs(np.maximum(out, 0), alpha=255.0)
    # Gentle S-shaped tone curve, as phone cameras do (a lookup table on the 8-bit values).
    c = rng.uniform(0.0, 0.35)
    x = np.arange(256, dtype=np.float32) / 255.0
    lut = np.clip((x + c * x * (1 - x) * (x - 0.5) * 2) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    u8 = cv2.LUT(u8, lut)
    if rng.random() < 0.7 * strength:
        q = int(rng.integers(35, 96))
        ok, buf = cv2.imencode(".jpg", u8[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            u8 = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return u8
