"""Geometry of okra pods and of the long, round things that are not okra.

Every elongated object (okra pod, bean, chilli, cucumber, stem, vine) is a *tube*:
a smooth curved centreline in image pixels plus a radius profile along its arc
length. A tube is rasterised inside its own bounding box: for every pixel we find
the nearest point on the centreline, which gives the arc length ``s`` (pixels from
the start of the centreline), the signed distance ``d`` across it and the local
tangent. Shading (:mod:`okrainsight.synth.shading`) turns these fields into colour.

Coordinates are ``(x, y)`` pixels, origin at the top-left pixel of the image; pixel
centres sit at integer coordinates.

An okra pod's centreline runs stem -> calyx cap -> pod body -> tip. Arc length
``s`` is 0 at the cap/body junction, negative over the cap and the stem, and
``length`` at the tip. The *part* of a pixel follows from ``s``: stem
(``s < -cap_len``), cap (``-cap_len <= s < 0``) or body (``s >= 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Tube:
    """A tube: centreline nodes and a dense radius table over arc length.

    Attributes:
        nodes: ``(N, 2)`` float64 centreline points ``(x, y)``, N >= 2, in order of arc length.
        s_nodes: ``(N,)`` arc length of each node; ``s_nodes[0]`` may be negative (stem side).
        s_table: ``(K,)`` increasing arc lengths where the radius is tabulated.
        r_table: ``(K,)`` radius in pixels at ``s_table`` (>= 0).
        cap_len: arc length of the calyx cap (okra and chillies; 0 for others).
        stem_len: arc length of the stem beyond the cap (0 when none).
    """

    nodes: np.ndarray
    s_nodes: np.ndarray
    s_table: np.ndarray
    r_table: np.ndarray
    cap_len: float = 0.0
    stem_len: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def s_start(self) -> float:
        return float(self.s_nodes[0])

    @property
    def s_end(self) -> float:
        return float(self.s_nodes[-1])

    def radius(self, s: np.ndarray) -> np.ndarray:
        """Radius in pixels at arc lengths ``s`` (any shape; 0 outside the tube)."""
        return np.interp(s, self.s_table, self.r_table, left=0.0, right=0.0).astype(np.float32)

    def point_at(self, s: np.ndarray) -> np.ndarray:
        """``(..., 2)`` centreline points at arc lengths ``s`` (linear between nodes)."""
        x = np.interp(s, self.s_nodes, self.nodes[:, 0])
        y = np.interp(s, self.s_nodes, self.nodes[:, 1])
        return np.stack([x, y], axis=-1)

    def outline(self, s_from: float | None = None, samples: int = 400, grow: float = 0.0) -> np.ndarray:
        """Closed outline polygon ``(M, 2)`` float ``(x, y)`` of the tube from ``s_from`` to the end.

        Built from offsets of the densely resampled centreline by the radius (plus ``grow``
        pixels); an independent description of the same shape as :func:`rasterise`, used to
        check masks.
        """
        s0 = self.s_start if s_from is None else max(float(s_from), self.s_start)
        s = np.linspace(s0, self.s_end, samples)
        pts = self.point_at(s)
        tang = np.gradient(pts, axis=0)
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        perp = np.stack([-tang[:, 1], tang[:, 0]], axis=1)
        r = self.radius(s)[:, None].astype(np.float64)
        r[0] = np.interp(s0 + 1e-6, self.s_table, self.r_table)
        r += grow
        left = pts + perp * r
        right = pts - perp * r
        return np.concatenate([left, right[::-1]], axis=0)

    def bbox(self, pad: float = 2.0) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` float bounds of the tube grown by ``pad`` pixels."""
        rmax = float(self.r_table.max(initial=0.0)) + pad
        lo = self.nodes.min(axis=0) - rmax
        hi = self.nodes.max(axis=0) + rmax
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


@dataclass
class TubeFields:
    """Per-pixel fields of a tube inside a crop ``[y0:y0+h, x0:x0+w]`` of the image.

    The fields are flat ``(M,)`` arrays over the M pixels of the crop that the tube
    touches (anti-aliased coverage > 0), at rows ``ys`` and columns ``xs`` of the crop;
    :meth:`grid` scatters one back into an ``(h, w)`` array.

    Attributes:
        x0, y0: top-left pixel of the crop in image coordinates; ``shape``: ``(h, w)``.
        s: arc length of the nearest centreline point (pixels).
        d: signed distance from the centreline (pixels, + on the left of travel).
        r: radius of the tube at ``s``.
        u: ``d / r`` clipped to [-1, 1] (position across the tube).
        tx, ty: unit tangent of the centreline at ``s``.
        coverage: float32 anti-aliased coverage in 0..1.
        inside: bool, ``|d| < r`` (the exact, hard silhouette).
    """

    x0: int
    y0: int
    shape: tuple[int, int]
    ys: np.ndarray
    xs: np.ndarray
    s: np.ndarray
    d: np.ndarray
    r: np.ndarray
    u: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    coverage: np.ndarray
    inside: np.ndarray

    def grid(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter flat ``(M,)`` or ``(M, C)`` values into an ``(h, w)`` or ``(h, w, C)`` array."""
        out = np.full(self.shape + values.shape[1:], fill, dtype=values.dtype)
        out[self.ys, self.xs] = values
        return out


def unit(angle: float) -> np.ndarray:
    """The unit vector ``(cos, sin)`` of ``angle`` (radians, image axes: x right, y down), float64."""
    return np.array([np.cos(angle), np.sin(angle)])


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(e1 - e0, 1e-9), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def centreline(
    start: tuple[float, float],
    angle: float,
    s_from: float,
    s_to: float,
    curvature: float,
    wiggle: float = 0.0,
    wiggle_phase: float = 0.0,
    nodes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth curve through ``start`` (at arc length 0) heading ``angle`` radians.

    ``curvature`` is the total turning (radians) from ``s_from`` to ``s_to``; ``wiggle``
    adds an S-bend of that amplitude (radians). Returns ``(nodes (N, 2), s (N,))``.
    """
    length = max(s_to - s_from, 1.0)
    n = nodes or int(np.clip(length / 5.0, 16, 72))
    s = np.linspace(s_from, s_to, n)
    v = (s - s_from) / length
    heading = angle + curvature * (v - 0.5) + wiggle * np.sin(2 * np.pi * v + wiggle_phase)
    ds = np.diff(s)
    mid = 0.5 * (heading[1:] + heading[:-1])
    steps = np.stack([np.cos(mid) * ds, np.sin(mid) * ds], axis=1)
    pts = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)], axis=0)
    zero = np.array([np.interp(0.0, s, pts[:, 0]), np.interp(0.0, s, pts[:, 1])])
    pts = pts - zero + np.asarray(start, dtype=np.float64)
    return pts, s


def okra_profile(
    length: float,
    width: float,
    cap_len: float,
    stem_len: float,
    stem_radius: float,
    taper_start: float,
    taper_power: float,
    shoulder: float,
    samples: int = 256,
    cap_base: float = 0.0,
    cap_cone: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Radius table of an okra: stem, calyx cap, blunt shoulder, long taper to a sharp tip.

    ``cap_base`` is the radius fraction of the calyx's crown where the stem leaves it
    (0 = the cap closes down to the stem radius, like a chilli's). ``cap_cone`` blends the
    cap's outline from a collar (0: full width 60% of the way down) to a cone that widens
    over the whole cap (1).

    ``width`` is the full diameter of the body; ``taper_start`` the fraction of the
    body length where the taper begins; ``taper_power`` > 1 keeps the body full into the
    taper (a blunt, short point), < 1 narrows it at once (a long needle tip); ``shoulder`` the
    radius fraction right below the cap.
    """
    rb = width / 2.0
    s = np.linspace(-(cap_len + stem_len), length, samples)
    r = np.zeros_like(s)
    stem = s < -cap_len
    r[stem] = stem_radius
    cap = (s >= -cap_len) & (s < 0)
    vc = (s[cap] + cap_len) / max(cap_len, 1e-6)
    r0 = max(stem_radius, cap_base * rb)
    collar = np.sqrt(smoothstep(0.0, 0.6, vc))
    cone = np.clip(vc, 0.0, 1.0) ** 0.8
    r_cap = r0 + (rb * 0.93 - r0) * ((1.0 - cap_cone) * collar + cap_cone * cone)
    r[cap] = r_cap
    body = s >= 0
    v = s[body] / length
    shoulder_curve = shoulder + (1.0 - shoulder) * smoothstep(0.0, 0.16, v)
    taper = np.clip((v - taper_start) / (1.0 - taper_start), 0.0, 1.0)
    r[body] = rb * shoulder_curve * (1.0 - taper**taper_power) ** 0.9
    r[-1] = 0.0
    return s, r


def generic_profile(
    length: float,
    width: float,
    end_a: float,
    end_b: float,
    power_a: float = 0.5,
    power_b: float = 0.5,
    bulge: float = 0.0,
    bumps: int = 0,
    bump_depth: float = 0.0,
    samples: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Radius table of a tube with rounded ends: beans, cucumbers, chillies, stems.

    ``end_a``/``end_b`` are the fractions of the length over which each end closes;
    ``power`` < 1 gives a round end, > 1 a pointed one. ``bulge`` swells the second
    half (zucchini, gourds); ``bumps``/``bump_depth`` add seed bulges (pea and bean pods).
    """
    s = np.linspace(0.0, length, samples)
    v = s / length
    r = np.full_like(s, width / 2.0)
    a = np.clip(v / max(end_a, 1e-6), 0.0, 1.0)
    b = np.clip((1.0 - v) / max(end_b, 1e-6), 0.0, 1.0)
    r *= (1.0 - (1.0 - a) ** 2) ** power_a * (1.0 - (1.0 - b) ** 2) ** power_b
    if bulge:
        r *= 1.0 + bulge * smoothstep(0.2, 0.9, v)
    if bumps:
        r *= 1.0 - bump_depth * (0.5 - 0.5 * np.cos(2 * np.pi * bumps * v)) * (a * b > 0.5)
    r[0] = r[-1] = 0.0
    return s, r


def rasterise(
    tube: Tube, image_size: tuple[int, int], pad: float = 2.0, hidden: np.ndarray | None = None
) -> TubeFields | None:
    """Fields of ``tube`` in its bounding box clipped to the image ``(width, height)``.

    ``hidden`` (optional ``(height, width)`` bool, image pixels): pixels that something opaque
    in front covers; they are left out of the fields (v20: occlusion culling, so that the
    hidden two thirds of a pile's pods are neither measured nor shaded).

    Returns None when the tube lies wholly outside the image, or wholly under ``hidden``.
    """
    w_img, h_img = image_size
    bx0, by0, bx1, by1 = tube.bbox(pad)
    x0, y0 = max(int(np.floor(bx0)), 0), max(int(np.floor(by0)), 0)
    x1, y1 = min(int(np.ceil(bx1)) + 1, w_img), min(int(np.ceil(by1)) + 1, h_img)
    if x1 <= x0 or y1 <= y0:
        return None
    h, w = y1 - y0, x1 - x0
    # Candidate pixels: the outline polygon grown by 1.5 pixels (cheap, cuts the work in half).
    poly = tube.outline(samples=160, grow=1.5) - np.array([x0, y0])
    cand = np.zeros((h, w), np.uint8)
    cv2.fillPoly(cand, [np.round(poly * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
    if hidden is not None:
        cand[hidden[y0:y1, x0:x1]] = 0
    ys, xs = np.nonzero(cand)
    if len(xs) == 0:
        return None
    px = (xs + x0).astype(np.float32)
    py = (ys + y0).astype(np.float32)
    a = tube.nodes[:-1].astype(np.float32)
    ab = (tube.nodes[1:] - tube.nodes[:-1]).astype(np.float32)
    len2 = np.maximum((ab**2).sum(axis=1), 1e-9)
    seg_len = np.sqrt(len2)
    nseg = len(a)
    # Coarse-to-fine nearest segment: the nearest of every 4th node, then the segments around it.
    step = 4
    coarse = tube.nodes[::step].astype(np.float32)
    dx = px[:, None] - coarse[None, :, 0]
    dy = py[:, None] - coarse[None, :, 1]
    j = np.argmin(dx * dx + dy * dy, axis=1) * step
    win = np.arange(-step - 1, step + 1, dtype=np.int32)
    cand_i = np.clip(j[:, None] + win[None, :], 0, nseg - 1)
    ax_, ay_ = a[cand_i, 0], a[cand_i, 1]
    bx_, by_ = ab[cand_i, 0], ab[cand_i, 1]
    qx = px[:, None] - ax_
    qy = py[:, None] - ay_
    t = np.clip((qx * bx_ + qy * by_) / len2[cand_i], 0.0, 1.0)
    ex = qx - t * bx_
    ey = qy - t * by_
    d2 = ex * ex + ey * ey
    k = np.argmin(d2, axis=1)
    rows = np.arange(len(k))
    best_d2 = d2[rows, k]
    best_i = cand_i[rows, k]
    best_t = t[rows, k]
    tx = ab[best_i, 0] / seg_len[best_i]
    ty = ab[best_i, 1] / seg_len[best_i]
    qx = px - a[best_i, 0]
    qy = py - a[best_i, 1]
    # Unclamped parameter on the end segments: pixels beyond a flat end are outside.
    raw_t = (qx * ab[best_i, 0] + qy * ab[best_i, 1]) / len2[best_i]
    beyond = ((best_i == 0) & (raw_t < 0)) | ((best_i == len(a) - 1) & (raw_t > 1))
    s_nodes = tube.s_nodes.astype(np.float32)
    s_pix = s_nodes[best_i] + best_t * seg_len[best_i]
    cross = tx * qy - ty * qx
    dist = np.sqrt(best_d2) * np.where(cross >= 0, 1.0, -1.0).astype(np.float32)
    r_pix = tube.radius(s_pix)
    inside_v = (np.abs(dist) < r_pix) & ~beyond
    cov_v = np.clip(r_pix - np.abs(dist) + 0.5, 0.0, 1.0)
    cov_v[beyond] = 0.0

    u_v = np.clip(dist / np.maximum(r_pix, 1e-3), -1.0, 1.0)
    keep = cov_v > 0
    return TubeFields(
        x0=x0,
        y0=y0,
        shape=(h, w),
        ys=ys[keep],
        xs=xs[keep],
        s=s_pix[keep],
        d=dist[keep],
        r=r_pix[keep],
        u=u_v[keep],
        tx=tx[keep],
        ty=ty[keep],
        coverage=cov_v[keep].astype(np.float32),
        inside=inside_v[keep],
    )
