"""Shading: per-pixel surface normals, lights, and the surface textures that tell okra apart.

Colours are float32 RGB in 0..1 (roughly linear). A :class:`Light` is a direction
``(x, y, z)`` (x right, y down, z towards the camera), a colour and an ambient level.

The okra cues are built here:
* ridges: the cross-section radius is ``r0 * (1 + a * cos(k * theta'))`` with ``k`` in 5..8
  ridges; the normal tilts with the derivative, grooves (valleys) are darkened; from v16 okra is
  mostly a polygon (``facet``): flat or hollow faces of even brightness, pale ridge crests;
* hairs: a pale velvety sheen towards the silhouette and fine bright specks;
* a matte surface (low, wide specular) unlike the glossy skin of chillies and peppers;
* calyx cap with its rim line, and the pale cut face of the stem.
Distractors use the same machinery with other :class:`Material` settings
(no ridges, glossy, stripes, warts, seed bumps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from okrainsight.synth.geometry import Tube, TubeFields, rasterise, smoothstep


@dataclass
class Light:
    """Directional light: unit ``direction`` (x right, y down, z to camera), ``colour`` RGB, ``ambient``."""

    direction: np.ndarray
    colour: np.ndarray
    ambient: float = 0.35

    @property
    def intensity(self) -> float:
        """Gain that makes a surface facing the camera come out at its albedo (matches backdrops)."""
        return min(1.3, 1.0 / (self.ambient + (1 - self.ambient) * max(float(self.direction[2]), 0.2)))

    @property
    def half(self) -> np.ndarray:
        h = self.direction + np.array([0.0, 0.0, 1.0])
        return h / np.linalg.norm(h)


def random_light(rng: np.random.Generator) -> Light:
    """A light from the upper half, colour temperature from warm to cool."""
    az = rng.uniform(0, 2 * np.pi)
    elev = rng.uniform(0.35, 1.35)
    d = np.array([np.cos(az) * np.cos(elev), np.sin(az) * np.cos(elev) - 0.2, np.sin(elev)])
    d /= np.linalg.norm(d)
    temp = rng.uniform(-1, 1)  # -1 warm (tungsten) .. +1 cool (shade)
    colour = np.array([1.0 - 0.12 * temp, 1.0, 1.0 + 0.14 * temp])
    colour /= colour.max()
    return Light(direction=d, colour=colour.astype(np.float32), ambient=float(rng.uniform(0.22, 0.5)))


@dataclass
class Material:
    """How a tube looks. Colours are RGB 0..1."""

    base: np.ndarray
    tip: np.ndarray | None = None  # colour towards the end of the tube (None = base)
    cap: np.ndarray | None = None  # calyx cap colour (okra, chilli)
    stem: np.ndarray | None = None
    cut: np.ndarray | None = None  # cut face at the stem end
    ridges: int = 0
    ridge_amp: float = 0.0
    groove_dark: float = 0.0
    ridge_phase: float = 0.0
    twist: float = 0.0  # ridge phase change (radians) over the tube length
    specular: float = 0.15
    shininess: float = 12.0
    hair: float = 0.0  # velvety rim sheen and bright hair specks
    speckle: float = 0.0
    grain: float = 1.0  # strength of the bright hair specks (not the sheen): < 1 for smooth-looking pods
    mottle: float = 0.05  # low-frequency colour variation
    blemish: float = 0.0  # brown spots (age)
    blemish_colour: np.ndarray = field(default_factory=lambda: np.array([0.36, 0.25, 0.1], np.float32))
    browning_tip: float = 0.0
    fibre: float = 0.0  # longitudinal streaks (old, fibrous pods)
    stripes: int = 0  # pale longitudinal stripes (cucumber, zucchini)
    stripe_colour: np.ndarray | None = None
    warts: float = 0.0  # cucumber bumps (dots)
    flat: float = 0.0  # flattening of the cross-section (pea and bean pods)
    wrap: float = 0.0  # wrap-around (soft, translucent) lighting: 0 = hard Lambert, 0.5 = soft
    fold: float = 0.0  # v14: a blade folded down its middle (leeks): towards two flat facets (flat at 1)
    facet: float = 0.0  # v16: ridged tube as a polygon: 0 = round with ridge bumps, 1 = flat faces
    concave: float = 0.0  # v16: faces hollowed between the ridges (the normal turns back across a face)
    crest: float = 0.0  # v16: pale, sharp ridge crests (hairs and a raised edge catch the light)
    lobes: float = 0.0  # v16: calyx lobes reaching onto the body between ridges (x cap length)
    velvet: float = 0.0  # v16: a matte fur veil over the whole surface (pods on the plant)


def value_noise(rng: np.random.Generator, shape: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """Smooth value noise: random ``shape`` grid resized to ``out`` = (h, w), values about 0..1."""
    small = rng.random(shape).astype(np.float32)
    return cv2.resize(small, (out[1], out[0]), interpolation=cv2.INTER_CUBIC)


def shade_tube(
    f: TubeFields,
    tube: Tube,
    mat: Material,
    light: Light,
    rng: np.random.Generator,
) -> np.ndarray:
    """Shade a rasterised tube. Returns ``(M, 3)`` float32 RGB for the pixels of ``f``."""
    m = len(f.s)
    length = max(tube.s_end, 1.0)
    v = np.clip(f.s / length, -1.0, 1.0)  # 0 at the cap junction, 1 at the tip
    u = f.u
    theta = np.arcsin(u)
    # Cross-section: ridges tilt the normal; flat pods tilt it less (wide flat faces).
    alpha = theta * (1.0 - 0.6 * mat.flat)
    if mat.fold > 0:
        # towards two flat facets tilted 0.6 rad from the crease (flat at fold=1): one lit, one in shade
        alpha = alpha * (1.0 - mat.fold) + mat.fold * 0.6 * np.sign(theta)
    groove = np.zeros_like(u)
    thp = None
    crest = None
    if mat.ridges > 0 and mat.ridge_amp > 0:
        thp = mat.ridges * (theta - mat.ridge_phase - mat.twist * v)
        sin_k = np.sin(thp)
        bump = np.arctan(mat.ridge_amp * mat.ridges * np.sign(sin_k) * np.abs(sin_k) ** 0.7)
        groove = ((1.0 - np.cos(thp)) * 0.5) ** 6
        if mat.facet > 0:
            # v16: a k-sided polygon: ridges at thp = 0 (mod 2 pi), face centres at pi. Across a face the
            # normal holds the face's direction (hollowed by ``concave``), so the pod shows bands of even
            # brightness that step at each ridge, as real pods do, instead of a round tube's smooth ramp.
            local = (np.mod(thp, 2 * np.pi) - np.pi) / mat.ridges  # radians from the face centre
            flat = -local * (1.0 + mat.concave)
            alpha = alpha + mat.facet * flat + (1.0 - 0.5 * mat.facet) * bump  # v17: bumps kept on faces
            alpha = np.clip(alpha, -1.45, 1.45)
            edge = (np.pi - np.abs(np.mod(thp, 2 * np.pi) - np.pi)) / np.pi  # 0 on a ridge, 1 mid-face
            crest = np.exp(-((edge / 0.1) ** 2)) * mat.facet
            line = np.exp(-(((edge - 0.22) / 0.1) ** 2))  # a dark line beside each crest
            groove = mat.facet * line + (1.0 - mat.facet) * groove
        else:
            alpha = alpha + bump
    n_perp = np.sin(alpha)
    n_z = np.cos(alpha)
    # Axial component from the taper (dr/ds).
    ds = 1.0
    drds = (tube.radius(f.s + ds) - tube.radius(f.s - ds)) / (2 * ds)
    n_ax = -np.clip(drds, -1.2, 1.2) * n_z
    px, py = -f.ty, f.tx
    nx = n_perp * px + n_ax * f.tx
    ny = n_perp * py + n_ax * f.ty
    norm = np.sqrt(nx * nx + ny * ny + n_z * n_z) + 1e-6
    nx, ny, nz = nx / norm, ny / norm, n_z / norm
    L = light.direction
    ndotl = nx * L[0] + ny * L[1] + nz * L[2]
    diffuse = np.clip((ndotl + mat.wrap) / (1.0 + mat.wrap), 0.0, 1.0)
    if mat.velvet > 0:  # fur scatters light: flatter shading
        diffuse = diffuse * (1.0 - 0.4 * mat.velvet) + 0.24 * mat.velvet
    H = light.half
    spec = np.clip(nx * H[0] + ny * H[1] + nz * H[2], 0.0, 1.0) ** mat.shininess

    # Albedo: base colour, towards the tip colour, parts.
    base = np.asarray(mat.base, np.float32)
    albedo = np.broadcast_to(base, (m, 3)).copy()
    if mat.tip is not None:
        t = smoothstep(0.55, 1.0, v)[..., None]
        albedo = albedo * (1 - t) + np.asarray(mat.tip, np.float32) * t
    # Texture in the tube's own (s, angle) frame: looked up, so it follows the surface.
    ts, ta = 48, 24
    ang = (theta + np.pi / 2) / np.pi  # 0..1 across the visible half
    sf = np.clip(((v + 0.2) / 1.2) * (ts - 1), 0, ts - 1).astype(np.float32)
    af = np.clip(ang * (ta - 1), 0, ta - 1).astype(np.float32)

    s0 = np.minimum(sf.astype(np.int32), ts - 2)
    fs = sf - s0

    def lookup(tex: np.ndarray) -> np.ndarray:
        """Bilinear lookup of a (ts, k*ta) texture at each pixel's (s, angle)."""
        ka = tex.shape[1]
        ax = af * np.float32((ka - 1) / (ta - 1))
        a0 = np.minimum(ax.astype(np.int32), ka - 2)
        fa = ax - a0
        top = tex[s0, a0] * (1 - fa) + tex[s0, a0 + 1] * fa
        bot = tex[s0 + 1, a0] * (1 - fa) + tex[s0 + 1, a0 + 1] * fa
        return top * (1 - fs) + bot * fs

    if mat.mottle > 0:
        tex = value_noise(rng, (6, 4), (ts, ta))
        albedo *= (1.0 + mat.mottle * (lookup(tex) - 0.5) * 2)[..., None]
    if mat.fibre > 0:
        streak = value_noise(rng, (4, 40), (ts, ta * 3))
        albedo *= (1.0 - mat.fibre * np.abs(lookup(streak) - 0.5) * 1.6)[..., None]
    if mat.stripes > 0:
        sc = np.asarray(mat.stripe_colour if mat.stripe_colour is not None else base * 1.5, np.float32)
        wob = lookup(value_noise(rng, (8, 2), (ts, ta))) * 0.6
        st = (0.5 + 0.5 * np.cos(mat.stripes * theta * 2 + wob * 3 + mat.ridge_phase)) ** 3
        st *= smoothstep(0.0, 0.35, v) * (1 - smoothstep(0.75, 1.0, v)) * 0.8 + 0.2
        albedo = albedo * (1 - st[..., None] * 0.6) + sc * (st[..., None] * 0.6)
    if mat.blemish > 0:
        spots = value_noise(rng, (14, 8), (ts * 2, ta))
        thresh = 1.0 - 0.3 * mat.blemish
        bl = smoothstep(thresh - 0.04, thresh + 0.08, lookup(spots)) * 0.85
        # Fine blemish dots as well.
        fine = rng.random(m).astype(np.float32) < 0.006 * mat.blemish
        bl = np.maximum(bl, fine * 0.6)
        albedo = albedo * (1 - bl[..., None]) + np.asarray(mat.blemish_colour, np.float32) * bl[..., None]
    if mat.browning_tip > 0:
        bt = smoothstep(1.0 - 0.25 * mat.browning_tip, 1.0, v)[..., None] * min(1.0, mat.browning_tip * 1.5)
        albedo = albedo * (1 - bt) + np.asarray(mat.blemish_colour, np.float32) * bt
    # Parts: cap, stem, cut face.
    cap_len, stem_len = tube.cap_len, tube.stem_len
    if cap_len > 0 and mat.cap is not None:
        # v16: the calyx's lobes reach down onto the body between the ridges, so its rim is scalloped.
        edge_s = np.zeros_like(f.s)
        if mat.lobes > 0 and thp is not None:
            edge_s = mat.lobes * cap_len * ((1.0 - np.cos(thp)) * 0.5) ** 1.5
        in_cap = (f.s < edge_s)[..., None]
        cap_col = np.asarray(mat.cap, np.float32)
        wrinkle = 0.85 + 0.3 * lookup(value_noise(rng, (12, 6), (ts, ta)))[..., None]
        albedo = np.where(in_cap, cap_col * wrinkle, albedo)
        # The scalloped rim of the calyx: a dark line at the junction, lighter just above it.
        rim = np.exp(-(((f.s - edge_s + 0.6) / 1.1) ** 2))[..., None]
        albedo = albedo * (1 - 0.3 * rim)
        lip = np.exp(-(((f.s - edge_s + 2.2) / 1.3) ** 2))[..., None]
        albedo = albedo + 0.08 * lip
    if stem_len > 0 and mat.stem is not None:
        in_stem = (f.s < -cap_len)[..., None]
        albedo = np.where(in_stem, np.asarray(mat.stem, np.float32), albedo)
        if mat.cut is not None:
            face = max(1.2, 0.5 * float(tube.radius(np.array([tube.s_start + 0.5]))[0]))
            in_face = (f.s < tube.s_start + face)[..., None]
            albedo = np.where(in_face, np.asarray(mat.cut, np.float32), albedo)
    if mat.warts > 0:
        wart = f.grid((rng.random(m) > 1 - 0.02 * mat.warts).astype(np.float32))
        wart = cv2.GaussianBlur(wart, (3, 3), 0.7)[f.ys, f.xs] * 2.0
        albedo = albedo * (1 + 0.5 * wart[..., None])
        diffuse = diffuse * (1 + 0.3 * wart)

    shade = light.ambient + (1 - light.ambient) * diffuse
    if mat.groove_dark > 0:
        shade = shade * (1 - mat.groove_dark * groove)
    if crest is not None and mat.crest > 0:
        shade = shade * (1 + mat.crest * crest)
    rgb = albedo * (shade * light.intensity)[..., None] * light.colour
    rgb = rgb + (mat.specular * spec)[..., None] * light.colour
    if mat.hair > 0:
        geo_nz = np.sqrt(np.clip(1 - u * u, 0, 1))
        rim = (1 - geo_nz) ** 2.5
        sheen = mat.hair * (0.35 * rim + 0.05 + 0.15 * mat.velvet)
        specks = (rng.random(m) < 0.08 * mat.hair).astype(np.float32) * 0.2 * mat.hair * mat.grain
        light_grey = np.array([0.85, 0.9, 0.8], np.float32) * light.colour
        rgb = rgb + ((sheen + specks) * (0.4 + 0.6 * diffuse))[..., None] * light_grey
    if mat.speckle > 0:
        sp = rng.random(m).astype(np.float32)
        dark = (sp < 0.01 * mat.speckle).astype(np.float32)
        rgb = rgb * (1 - 0.2 * dark[..., None])
        fine = (rng.standard_normal(m, dtype=np.float32)) * 0.05 * mat.speckle
        rgb = rgb * (1 + fine[..., None])
    return rgb.astype(np.float32)


def shade_height(
    height: np.ndarray,
    albedo: np.ndarray,
    light: Light,
    specular: float = 0.1,
    shininess: float = 20.0,
    bump: float = 1.0,
) -> np.ndarray:
    """Shade a surface given as a height field ``(h, w)`` (pixels) with albedo ``(h, w, 3)`` or ``(3,)``.

    Used for leaves, peppers, hands, flowers and plates. Returns ``(h, w, 3)`` float32.
    """
    gy, gx = np.gradient(height.astype(np.float32) * bump)
    nz = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    nx, ny = -gx * nz, -gy * nz
    L = light.direction
    diffuse = np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0.0, 1.0)
    H = light.half
    spec = np.clip(nx * H[0] + ny * H[1] + nz * H[2], 0.0, 1.0) ** shininess
    shade = (light.ambient + (1 - light.ambient) * diffuse) * light.intensity
    alb = np.asarray(albedo, np.float32)
    rgb = alb * shade[..., None] * light.colour + (specular * spec)[..., None] * light.colour
    return rgb.astype(np.float32)


@dataclass
class Sprite:
    """One rendered object in its own crop of the image.

    Attributes:
        x0, y0: top-left pixel of the crop in image coordinates.
        rgb: ``(h, w, 3)`` float32 colour, 0..1.
        alpha: ``(h, w)`` float32 anti-aliased coverage, 0..1.
        cover: ``(h, w)`` bool hard silhouette (what occludes things behind it).
        okra: ``(h, w)`` bool pixels that belong in the okra mask, or None for distractors.
        kind: "okra" or the distractor name ("bean", "leaf", ...).
        lift: how far above the surface it is, in pixels (for its cast shadow).
    """

    x0: int
    y0: int
    rgb: np.ndarray
    alpha: np.ndarray
    cover: np.ndarray
    okra: np.ndarray | None
    kind: str
    lift: float = 4.0
    info: dict | None = None
    tube: Tube | None = None
    fields: TubeFields | None = None


def tube_sprite(
    tube: Tube,
    mat: Material,
    light: Light,
    rng: np.random.Generator,
    image_size: tuple[int, int],
    kind: str,
    lift: float | None = None,
    hidden: np.ndarray | None = None,
) -> Sprite | None:
    """Rasterise and shade ``tube``; None when it is wholly outside the image (or under
    ``hidden``, the ``(height, width)`` bool pixels of the image that opaque things in front
    cover, which are left out: :func:`~okrainsight.synth.geometry.rasterise`)."""
    f = rasterise(tube, image_size, hidden=hidden)
    if f is None or not f.inside.any():
        return None
    rgb = shade_tube(f, tube, mat, light, rng)
    r = float(tube.r_table.max(initial=1.0))
    return Sprite(
        x0=f.x0,
        y0=f.y0,
        rgb=f.grid(rgb),
        alpha=f.grid(f.coverage),
        cover=f.grid(f.inside, False),
        okra=None,
        kind=kind,
        lift=r * 0.8 if lift is None else lift,
        tube=tube,
        fields=f,
    )
