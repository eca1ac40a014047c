"""Per-pod features for the tip-break grader, computed with numpy and OpenCV only (no torch).

One pod is described by a fixed-length float vector (:data:`FEATURE_NAMES`, in this order):

* shape: maximum width relative to the length along the pod (geodesic), aspect ratio, taper
  (width profile along the principal axis), curvature (sagitta of a parabola fitted along
  the principal axis, relative to the span), ridge sharpness (second derivative of lightness
  *across* the pod, and relative to *along* it);
* colour in CIELAB (``L`` 0..100, ``a``, ``b`` about -128..127) over the pod's inner pixels:
  mean, standard deviation, 10th and 90th percentiles of each channel, mean chroma and hue
  angle, the fraction of brown pixels (``a > 3`` and ``b > 8``) and of dark blemish pixels;
* texture: local variance, gradient energy, fibre ratio (gradients across / along the pod),
  and a local-binary-pattern histogram's entropy and flat-pattern share.

Texture and ridge features are computed on the pod's crop resampled so that its maximum
width is :data:`NORM_WIDTH` pixels, so they mean the same at any photo resolution. Every
feature is free of the photo's scale and of the other pods in it: the pod's absolute length
(a renderer cue: older pods are longer) is left out because a photo carries no scale.

Conventions: images are ``(H, W, 3)`` uint8 RGB; masks ``(H, W)`` bool (or 0/255) for one
pod; boxes ``[x0, y0, x1, y1]`` with ``x1, y1`` exclusive; coordinates ``(x, y)`` pixels,
origin top-left.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Width in pixels the pod crop is resampled to before texture and ridge features.
NORM_WIDTH = 32.0

SHAPE_FEATURES = (
    "width_rel",
    "aspect",
    "taper",
    "end_ratio",
    "curvature",
    "ridge_sharpness",
    "ridge_anisotropy",
)
COLOUR_FEATURES = tuple(
    f"{ch}_{stat}" for ch in ("L", "a", "b") for stat in ("mean", "std", "p10", "p90")
) + ("chroma_mean", "hue_angle", "brown_fraction", "dark_fraction")
TEXTURE_FEATURES = ("local_variance", "gradient_energy", "fibre_ratio", "lbp_entropy", "lbp_flat")
#: Names of the feature vector's entries, in order.
FEATURE_NAMES: tuple[str, ...] = SHAPE_FEATURES + COLOUR_FEATURES + TEXTURE_FEATURES


def _geodesic_length(mask: np.ndarray) -> float:
    from okrainsight.runtime import pod_length

    return pod_length(mask)


def _principal_axis(ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``(tangent, normal)`` in ``(x, y)`` of the pixel cloud's principal axis."""
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    pts -= pts.mean(axis=0)
    cov = pts.T @ pts / max(len(pts) - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    t = vecs[:, int(np.argmax(vals))]
    return t, np.array([-t[1], t[0]])


def _lab(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 CIELAB (L 0..100) of a uint8 RGB image."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _lbp_stats(lum: np.ndarray, inner: np.ndarray) -> tuple[float, float]:
    """Entropy (bits, 0..8) of the 8-neighbour LBP code histogram over ``inner``, and the
    share of flat codes (all neighbours brighter, or none)."""
    h, w = lum.shape
    if h < 3 or w < 3:
        return 0.0, 1.0
    c = lum[1:-1, 1:-1]
    code = np.zeros(c.shape, np.int32)
    shifts = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    for bit, (dy, dx) in enumerate(shifts):
        nb = lum[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]
        code |= (nb >= c + 0.5).astype(np.int32) << bit
    sel = inner[1:-1, 1:-1]
    codes = code[sel]
    if codes.size == 0:
        return 0.0, 1.0
    hist = np.bincount(codes, minlength=256).astype(np.float64)
    p = hist / hist.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    flat = float((hist[0] + hist[255]) / hist.sum())
    return entropy, flat


def pod_features(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    length_px: float | None = None,
    bbox: list[int] | tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """The feature vector of one pod.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        mask: this pod's mask: ``(H, W)`` over the whole photo, or, with ``bbox`` given,
            the crop ``mask[y0:y1, x0:x1]`` only (as :class:`okrainsight.runtime.Pod.crop`).
        length_px: the pod's tip-to-tip length if already measured (else measured here).
        bbox: ``[x0, y0, x1, y1]`` of ``mask`` inside ``image`` when ``mask`` is a crop.

    Returns:
        ``(len(FEATURE_NAMES),)`` float64, finite.

    Raises:
        ValueError: the mask is empty or its size does not fit the image.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    H, W = img.shape[:2]
    m = np.asarray(mask) > 0
    if bbox is None:
        if m.shape != (H, W):
            raise ValueError(f"mask shape {m.shape} does not match image {(H, W)}")
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            raise ValueError("empty pod mask")
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        crop_m = m[y0:y1, x0:x1]
    else:
        x0, y0, x1, y1 = (int(v) for v in bbox)
        crop_m = m
        if crop_m.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"mask crop shape {crop_m.shape} does not match bbox {bbox}")
        if not crop_m.any():
            raise ValueError("empty pod mask")
    crop_i = img[y0:y1, x0:x1]

    # ---- shape, at the photo's resolution
    ys, xs = np.nonzero(crop_m)
    length = float(length_px) if length_px else _geodesic_length(crop_m)
    length = max(length, 1.0)
    dist = cv2.distanceTransform(np.pad(crop_m, 1).astype(np.uint8), cv2.DIST_L2, 5)
    max_width = max(2.0 * float(dist.max()), 1.0)
    t, n = _principal_axis(ys, xs)
    proj = xs * t[0] + ys * t[1]
    span = float(proj.max() - proj.min()) + 1.0
    bins = np.clip(((proj - proj.min()) / span * 10).astype(int), 0, 9)
    widths = np.bincount(bins, minlength=10) / (span / 10.0)
    wmax = max(float(widths.max()), 1e-6)
    ends = (float(widths[:3].mean()), float(widths[-3:].mean()))
    taper = 1.0 - min(ends) / wmax
    end_ratio = min(ends) / max(max(ends), 1e-6)
    # bend: sagitta of a parabola fitted to the across-axis offset, relative to the span
    u = (proj - proj.mean()) / span
    off = xs * n[0] + ys * n[1]
    c2 = float(np.polyfit(u, off, 2)[0]) if len(np.unique(bins)) >= 3 else 0.0
    curvature = abs(c2) * 0.25 / span

    # ---- resample to the normalised width for colour, texture and ridges
    s = float(np.clip(NORM_WIDTH / max_width, 0.1, 4.0))
    size = (max(3, round(crop_i.shape[1] * s)), max(3, round(crop_i.shape[0] * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    ni = cv2.resize(crop_i, size, interpolation=interp)
    nm = cv2.resize(crop_m.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) >= 128
    inner = cv2.erode(nm.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if inner.sum() < 8:
        inner = nm if nm.sum() >= 1 else np.ones_like(nm)
    lab = _lab(ni)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    colour: list[float] = []
    for ch in (L, a, b):
        v = ch[inner].astype(np.float64)
        colour += [float(v.mean()), float(v.std()), float(np.percentile(v, 10)), float(np.percentile(v, 90))]
    av, bv, lv = a[inner].astype(np.float64), b[inner].astype(np.float64), L[inner].astype(np.float64)
    chroma = float(np.hypot(av, bv).mean())
    hue = float(np.degrees(np.arctan2(bv.mean(), av.mean())))
    brown = float(((av > 3) & (bv > 8)).mean())
    dark = float((lv < lv.mean() - 15).mean())
    colour += [chroma, hue, brown, dark]

    # ---- texture and ridges on lightness
    lum = cv2.GaussianBlur(L, (3, 3), 0.7)
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    gxx = cv2.Sobel(lum, cv2.CV_32F, 2, 0, ksize=3) / 4.0
    gyy = cv2.Sobel(lum, cv2.CV_32F, 0, 2, ksize=3) / 4.0
    gxy = cv2.Sobel(lum, cv2.CV_32F, 1, 1, ksize=3) / 4.0
    # the principal axis is the same after isotropic resampling
    g_n = np.abs(gx * n[0] + gy * n[1])[inner]
    g_t = np.abs(gx * t[0] + gy * t[1])[inner]
    h_nn = np.abs(gxx * n[0] ** 2 + 2 * gxy * n[0] * n[1] + gyy * n[1] ** 2)[inner]
    h_tt = np.abs(gxx * t[0] ** 2 + 2 * gxy * t[0] * t[1] + gyy * t[1] ** 2)[inner]
    l_mean = float(lv.mean()) + 1.0
    ridge_sharp = float(h_nn.mean()) / l_mean * 100.0
    ridge_aniso = float(h_nn.mean()) / (float(h_tt.mean()) + 1e-3)
    mu = cv2.blur(lum, (5, 5))
    var = np.maximum(cv2.blur(lum * lum, (5, 5)) - mu * mu, 0.0)
    local_var = float(np.sqrt(var[inner]).mean())
    grad_energy = float(np.hypot(gx, gy)[inner].mean())
    fibre = float(g_n.mean()) / (float(g_t.mean()) + 1e-3)
    entropy, flat = _lbp_stats(lum, inner)

    shape = [
        max_width / length,
        length / max_width,
        taper,
        end_ratio,
        curvature,
        ridge_sharp,
        ridge_aniso,
    ]
    texture = [local_var, grad_energy, fibre, entropy, flat]
    vec = np.array(shape + colour + texture, np.float64)
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)


def pod_shape_stats(mask: np.ndarray, length_px: float | None = None) -> dict[str, float]:
    """Shape numbers the gate uses for one pod's mask (crop or full; bool or 0/255).

    Returns:
        ``{"area_px", "length_px", "max_width_px", "elongation", "solidity"}`` where elongation is
        ``length / max_width`` and solidity is area over convex-hull area (0..1).
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    area = float(m.sum())
    if area == 0:
        return {"area_px": 0.0, "length_px": 0.0, "max_width_px": 0.0, "elongation": 0.0, "solidity": 0.0}
    length = float(length_px) if length_px else _geodesic_length(m > 0)
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)
    max_width = max(2.0 * float(dist.max()), 1.0)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = sum(cv2.contourArea(cv2.convexHull(c)) for c in contours)
    solidity = float(min(1.0, area / hull_area)) if hull_area > 0 else 0.0
    return {
        "area_px": area,
        "length_px": length,
        "max_width_px": max_width,
        "elongation": length / max_width,
        "solidity": solidity,
    }


__all__ = ["FEATURE_NAMES", "NORM_WIDTH", "pod_features", "pod_shape_stats"]
