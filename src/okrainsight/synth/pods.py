"""Okra pods: sampling the attributes of one pod and rendering it as a sprite.

Tenderness (the grading issue trains on it) is decided by the pod's *age* in 0..1
(``tender = age < 0.5``) and shows in several coupled cues, each with its own noise
so that no single cue decides alone:

* length: older pods are longer (``length = scale * (0.8 + 0.5 * age)``);
* colour: young pods are bright, saturated green; old pods are duller, yellower;
* ridges: old pods have more pronounced ridges and darker grooves (v17: flatter, hollower faces and
  brighter crests);
* fibre and blemishes: old pods get longitudinal fibre streaks, brown spots, a browning tip;
* hairs: young pods are fuzzier (a softer, velvety sheen).
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from okrainsight.synth.geometry import Tube, centreline, okra_profile
from okrainsight.synth.shading import Light, Material, Sprite, tube_sprite

TENDER_AGE = 0.5


def hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    """RGB float32 0..1 from hue in degrees, saturation and value in 0..1."""
    return np.array(
        colorsys.hsv_to_rgb((h_deg % 360) / 360.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))),
        np.float32,
    )


def sample_pod_attributes(rng: np.random.Generator, scale: float, age: float | None = None) -> dict:
    """Random attributes of one pod; ``scale`` is the typical pod length in pixels."""
    age = float(rng.uniform(0, 1) if age is None else age)
    length = scale * (0.8 + 0.5 * age) * rng.uniform(0.85, 1.15)
    # v18: up to 0.22 of the length: full-bodied shop pods (white_02) read as okra, slender ones as blades
    width = length * rng.uniform(0.12, 0.22) * (1 + 0.1 * age)
    variety = "burgundy" if rng.random() < 0.04 else ("deep" if rng.random() < 0.35 else "green")
    if variety == "green" and rng.random() < 0.25:
        variety = "grey"
    # Market okra is a bright, saturated grass green (photographed: hue 84-94 degrees, saturation
    # 0.45-0.85, value 0.4-0.65 over the pod); age dulls and yellows it a little.
    if variety == "burgundy":
        hue, sat, val = rng.uniform(335, 355), rng.uniform(0.45, 0.65), rng.uniform(0.3, 0.45)
    elif variety == "deep":
        # v10: darker and more saturated, as shop photos of dark pods are (white_02: pixel
        # saturation 0.87, value 0.37 over the pod)
        hue, sat, val = rng.uniform(86, 118), rng.uniform(0.65, 0.97), rng.uniform(0.35, 0.6)
    elif variety == "grey":
        # v11: dull blue-grey green, as in cool-lit market baskets (a real basket of pods: median
        # hue 115 degrees, 10-90% 89-156, saturation 0.46, value 0.5); matte like every pod (a
        # draft's waxy sheen made a real cucumber heap okra to the students)
        hue, sat, val = rng.uniform(98, 132), rng.uniform(0.3, 0.55), rng.uniform(0.45, 0.78)
    else:
        hue, sat, val = rng.uniform(80, 108), rng.uniform(0.5, 0.88), rng.uniform(0.58, 0.88)
    if variety != "burgundy":
        hue = max(68.0, hue - age * rng.uniform(3, 16))
    sat *= 1 - 0.22 * age * rng.uniform(0.6, 1.0)
    val *= 1 - 0.15 * age * rng.uniform(0.5, 1.0)
    curvature = rng.normal(0, 0.35) if rng.random() < 0.85 else rng.normal(0, 0.9)
    return {
        "age": age,
        "tender": age < TENDER_AGE,
        "length": float(length),
        "width": float(width),
        "variety": variety,
        "hue": float(hue % 360),
        "sat": float(sat),
        "val": float(val),
        "curvature": float(curvature),
        "wiggle": float(rng.normal(0, 0.08)),
        "ridges": int(rng.integers(5, 9)),
        "ridge_amp": float(rng.uniform(0.02, 0.045) + 0.04 * age * rng.uniform(0.6, 1.0)),
        "cap_len": float(length * rng.uniform(0.07, 0.12)),
        "stem_len": float(length * (rng.uniform(0.02, 0.09) if rng.random() < 0.75 else 0.0)),
        "cap_base": float(rng.uniform(0.5, 0.8)),
        # v5: many market pods stay full-bodied for most of their length, then taper.
        # v19: full-bodied to 40-75% of the length, then a taper that stays full before the tip
        # (power 1.1-2.4); v5-v18's 0.3-0.7 and 0.9-2.2 drew many blade-like pods, and rendered piles
        # read as heaps of grass next to a real basket (pile_01)
        "taper_start": float(rng.uniform(0.4, 0.75)),
        "taper_power": float(rng.uniform(1.1, 2.4)),
        "shoulder": float(rng.uniform(0.78, 0.93)),
        "tilt": 0.0,
        # v16: the calyx is a ridged cone more often than a collar (1 = cone from the stem to the body)
        "cap_cone": float(rng.uniform(0.3, 1.0)),
        # v16: most pods are a polygon in section (flat faces between the ridges), as real pods are;
        # v17: the more so the older (old pods' ridges stand out: a tenderness cue, docstring above)
        "facet": float(rng.uniform(0.2, 0.4) + 0.55 * age if rng.random() < 0.85 else rng.uniform(0.0, 0.3)),
    }


def plant_pod_attributes(rng: np.random.Generator, scale: float) -> dict:
    """A young pod still growing on the plant (v13), as photographed among the leaves: short and
    fat, spindle-shaped (narrow at the calyx, full width from a sixth of the way up to where the
    taper starts at 35-60% of the body), pale sage green, fuzzy, nearly straight, on a short stalk
    (peduncle) from the main stem.
    ``scale`` is the typical pod length in pixels."""
    a = sample_pod_attributes(rng, scale, age=float(rng.uniform(0.0, 0.35)))
    a.update(
        variety="green",
        hue=float(rng.uniform(82, 112)),
        sat=float(rng.uniform(0.22, 0.5)),
        val=float(rng.uniform(0.5, 0.8)),
        width=float(a["length"] * rng.uniform(0.2, 0.3)),
        shoulder=float(rng.uniform(0.55, 0.75)),
        taper_start=float(rng.uniform(0.35, 0.6)),
        taper_power=float(rng.uniform(0.9, 1.5)),
        stem_len=float(a["length"] * rng.uniform(0.04, 0.1)),
        cap_base=float(rng.uniform(0.3, 0.5)),
        curvature=float(rng.normal(0, 0.15)),
        fuzz=float(rng.uniform(1.3, 1.8)),
    )
    return a


def pod_tube(attrs: dict, centre: tuple[float, float], angle: float, rng: np.random.Generator) -> Tube:
    """The tube of a pod whose body middle is at ``centre``, heading ``angle`` (cap -> tip)."""
    L, W = attrs["length"], attrs["width"]
    cap, stem = attrs["cap_len"], attrs["stem_len"]
    s_tab, r_tab = okra_profile(
        L,
        W,
        cap,
        stem,
        W / 2 * rng.uniform(0.28, 0.42),
        attrs["taper_start"],
        attrs["taper_power"],
        attrs["shoulder"],
        cap_base=attrs.get("cap_base", 0.7),
        cap_cone=attrs.get("cap_cone", 0.0),
    )
    nodes, s_nodes = centreline(
        (0.0, 0.0), angle, -(cap + stem), L, attrs["curvature"], attrs["wiggle"], rng.uniform(0, 6.28)
    )
    tube = Tube(nodes, s_nodes, s_tab, r_tab, cap_len=cap, stem_len=stem)
    mid = tube.point_at(np.array(L / 2))
    tube.nodes = nodes - mid + np.asarray(centre, np.float64)
    return tube


def pod_material(attrs: dict, rng: np.random.Generator) -> Material:
    age = attrs["age"]
    base = hsv(attrs["hue"], attrs["sat"], attrs["val"])
    tip = hsv(attrs["hue"] - rng.uniform(0, 15), attrs["sat"] * rng.uniform(0.8, 1.0), attrs["val"] * 1.08)
    if attrs["variety"] == "burgundy":
        cap = hsv(rng.uniform(60, 90), 0.45, 0.45) if rng.random() < 0.5 else base * 1.1
    elif rng.random() < 0.4:
        # v18: a calyx of the body's own colour, a shade darker, as on dark shop pods (white_02: a
        # deep-green cap that only its shape and the neck below it tell from the body; v0.9 found
        # none of those pods pasted on cloth or among vegetables)
        cap = hsv(
            attrs["hue"] - rng.uniform(0, 6),
            attrs["sat"] * rng.uniform(0.9, 1.05),
            attrs["val"] * rng.uniform(0.82, 1.0),
        )
    else:
        cap = hsv(
            attrs["hue"] - rng.uniform(0, 20), attrs["sat"] * rng.uniform(0.7, 0.95), attrs["val"] * 1.05
        )
    if age > 0.6 and rng.random() < 0.5:
        cap = cap * 0.7 + np.array([0.45, 0.35, 0.18], np.float32) * 0.3
    # v5: 40% of pods look smooth (hair specks and speckle faint; the velvety sheen of young pods
    # stays), as in soft-lit product photographs and web-sized pictures, so that fine speckle
    # cannot stand in for "okra".
    fine = 0.15 if rng.random() < 0.4 else 1.0
    fuzz = float(attrs.get("fuzz", 1.0))  # v13: pods on the plant are fuzzier (plant_pod_attributes)
    if fuzz > 1.0:
        fine = 1.0
    deep = attrs["variety"] == "deep"
    return Material(
        base=base,
        tip=tip,
        cap=cap,
        stem=cap * 0.6 + hsv(rng.uniform(50, 80), rng.uniform(0.2, 0.45), rng.uniform(0.55, 0.8)) * 0.4,
        cut=hsv(rng.uniform(45, 70), rng.uniform(0.2, 0.4), rng.uniform(0.7, 0.9)),
        ridges=attrs["ridges"],
        ridge_amp=attrs["ridge_amp"],
        groove_dark=float(rng.uniform(0.02, 0.1) + 0.12 * age),
        ridge_phase=float(rng.uniform(0, 2 * np.pi)),
        twist=float(rng.normal(0, 0.3)),
        specular=float(rng.uniform(0.05, 0.2)),
        shininess=float(rng.uniform(6, 16)),
        # v10: the deep-green variety often shows little velvet (dark, saturated shop photos)
        hair=float(
            fuzz * rng.uniform(0.5, 1.0) * (1.15 - 0.5 * age) * (rng.uniform(0.2, 1.0) if deep else 1.0)
        ),
        speckle=float(fine * rng.uniform(0.3, 1.0)),
        grain=fine,
        mottle=float(rng.uniform(0.03, 0.1)),
        blemish=float(max(0.0, age - 0.5) * rng.uniform(0.5, 1.6)),
        browning_tip=float(max(0.0, age - 0.55) * rng.uniform(0.5, 2.0)),
        fibre=float(age * rng.uniform(0.05, 0.3)),
        wrap=float(rng.uniform(0.3, 0.8)),
        facet=float(attrs.get("facet", 0.0)),
        # v17: faces hollow and crests sharpen with age (v16 drew them regardless of age, which hid the
        # ridge cue of tenderness: the grader's planted-cue ROC-AUC fell from 0.95 to 0.92)
        concave=float(rng.uniform(0.0, 0.1) + 0.8 * age * rng.uniform(0.7, 1.0)),
        crest=float(rng.uniform(0.03, 0.12) + 0.3 * age),
        lobes=float(rng.uniform(0.15, 0.6)),
        velvet=float(np.clip(fuzz - 1.0, 0.0, 1.0) * rng.uniform(1.2, 2.0)),
    )


def render_pod(
    attrs: dict,
    centre: tuple[float, float],
    angle: float,
    light: Light,
    rng: np.random.Generator,
    image_size: tuple[int, int],
    include_stem: bool = False,
    hidden: np.ndarray | None = None,
) -> Sprite | None:
    """Render one pod; the sprite's ``okra`` mask holds body + cap (+ stem with ``include_stem``).

    ``hidden`` (``(height, width)`` bool, image pixels that opaque things in front cover) culls
    those pixels (v20): the sprite holds only the rest, and ``info["full_px"]`` records the
    pod's okra area inside the image had nothing hidden it (:func:`_okra_area`), from which the
    scene's ``visible_fraction`` is measured.

    A pod with ``attrs["tilt"] > 0`` points its cap towards the camera: its projected length
    shrinks by ``cos(tilt)`` and the face of the calyx (with the pale cut stem in its middle
    and the brownish rim) shows as an ellipse at the cap end, recorded in ``tube.meta["end_disc"]``.
    """
    tilt = float(attrs.get("tilt", 0.0))
    if tilt > 0:
        attrs = dict(attrs)
        k = float(np.cos(tilt))
        attrs["length"] *= k
        attrs["cap_len"] *= k
        attrs["stem_len"] = 0.0
    tube = pod_tube(attrs, centre, angle, rng)
    mat = pod_material(attrs, rng)
    sprite = tube_sprite(tube, mat, light, rng, image_size, "okra", hidden=hidden)
    if sprite is None or sprite.fields is None:
        return None
    f = sprite.fields
    limit = tube.s_start - 1.0 if include_stem else -tube.cap_len
    sprite.okra = f.grid(f.inside & (f.s >= limit), False)
    if tilt > 0:
        _draw_end_disc(sprite, tube, mat, light, tilt, attrs["width"] / 2 * 0.92, rng, attrs["age"])
    sprite.info = dict(attrs)
    if hidden is not None:
        sprite.info["full_px"] = _okra_area(tube, limit, sprite, hidden)
    return sprite


def _okra_area(tube: Tube, s_from: float, sprite: Sprite, hidden: np.ndarray) -> int:
    """The okra area inside the image of a pod culled under ``hidden`` (``(height, width)`` bool),
    had nothing hidden it: its okra pixels that were drawn, counted exactly, plus an estimate of
    those under ``hidden``: the pixels there that its outline from ``s_from`` (and the calyx face
    of a tilted pod) covers. The sprite's crop is the tube's clipped bounding box."""
    okra = sprite.okra
    h, w = okra.shape
    under = hidden[sprite.y0 : sprite.y0 + h, sprite.x0 : sprite.x0 + w]
    drawn = int((okra & ~under).sum())
    if not under.any():  # nothing in front: every okra pixel was drawn
        return drawn
    # fillPoly also takes in the pixels its edges touch: outlines drawn 0.75 pixel inside match
    # the exact point-in-outline count to a few percent (median ratio 0.99 on piles)
    polys = [tube.outline(s_from, samples=200, grow=-0.75)]
    if "end_disc" in tube.meta:
        cx, cy, a, b, tx, ty = tube.meta["end_disc"]
        phi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        ca, sb = max(a - 0.75, 0.0) * np.cos(phi), max(b - 0.75, 0.0) * np.sin(phi)
        polys.append(np.stack([cx - ca * ty + sb * tx, cy + ca * tx + sb * ty], axis=1))
    canvas = np.zeros((h, w), np.uint8)
    for poly in polys:
        pts = np.round((poly - np.array([sprite.x0, sprite.y0])) * 4).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=2)
    return drawn + int((canvas.astype(bool) & under).sum())


def _draw_end_disc(
    sprite: Sprite,
    tube: Tube,
    mat: Material,
    light: Light,
    tilt: float,
    radius: float,
    rng: np.random.Generator,
    age: float = 0.0,
) -> None:
    """Paint the calyx face of a pod seen cap-first onto its sprite (and into its okra mask).

    v6: as on market pods, the cut stem face is a wide, pale cream-green disc (40 to 75% of the
    face), ringed by the calyx's lighter green lobes; only old pods have a brown rim. The face
    turns towards the camera, so it is lit more evenly than the flank.
    """
    c = tube.nodes[0]
    t = tube.nodes[min(2, len(tube.nodes) - 1)] - tube.nodes[0]
    t = t / max(float(np.linalg.norm(t)), 1e-9)
    a = radius  # across the pod
    b = max(radius * float(np.sin(tilt)), 1.0)  # along the pod axis
    tube.meta["end_disc"] = (float(c[0]), float(c[1]), a, b, float(t[0]), float(t[1]))
    h, w = sprite.cover.shape
    cx, cy = c[0] - sprite.x0, c[1] - sprite.y0
    x0, x1 = max(0, int(cx - a - 2)), min(w, int(cx + a + 3))
    y0, y1 = max(0, int(cy - a - 2)), min(h, int(cy + a + 3))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    along = dx * t[0] + dy * t[1]
    across = -dx * t[1] + dy * t[0]
    e = np.sqrt((across / a) ** 2 + (along / b) ** 2)
    inside = e < 1.0
    if not inside.any():
        return
    cover_aa = np.clip((1.0 - e) * min(a, b) + 0.5, 0.0, 1.0).astype(np.float32)
    # A dome: normal tilts towards the rim; the face looks back along the axis (-t) and to the camera.
    nz = np.sqrt(np.clip(1 - e * e, 0.05, 1.0)) * np.float32(np.sin(tilt)) + np.float32(np.cos(tilt)) * 0.3
    nx = (across / a) * -t[1] - np.float32(np.cos(tilt)) * t[0] * 0.8
    ny = (across / a) * t[0] - np.float32(np.cos(tilt)) * t[1] * 0.8
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6
    L = light.direction
    diffuse = np.clip((nx * L[0] + ny * L[1] + nz * L[2]) / norm, 0, 1)
    ambient = max(light.ambient, 0.45)
    shade = (ambient + (1 - ambient) * diffuse) * light.intensity
    cap = np.asarray(mat.cap if mat.cap is not None else mat.base, np.float32)
    cut = np.asarray(mat.cut if mat.cut is not None else cap * 1.4, np.float32)
    albedo = np.broadcast_to(np.clip(cap * 1.12, 0, 1), e.shape + (3,)).copy()
    # Calyx lobes: a scalloped (5-lobed, like the ridges) pattern around the face.
    ang = np.arctan2(along / b, across / a)
    lobes = 0.5 + 0.5 * np.cos(ang * mat.ridges + mat.ridge_phase)
    albedo *= (0.9 + 0.15 * lobes * (e > 0.5))[..., None]
    ring = np.exp(-(((e - 0.93) / 0.06) ** 2))[..., None]
    if age > 0.6:  # old pods: a brown rim where the calyx dries
        rim_col = np.array([0.55, 0.32, 0.18], np.float32)
        albedo = albedo * (1 - 0.7 * ring) + rim_col * (0.7 * ring)
    else:
        albedo = albedo * (1 - 0.25 * ring)
    inner = float(rng.uniform(0.4, 0.75))
    # The cut face's outline follows the ridges (a rounded polygon), with a darker ring of
    # vascular bundles just inside it and a paler pith.
    poly = inner * (1 + 0.08 * np.cos(ang * mat.ridges + mat.ridge_phase))
    face = np.clip((poly - e) / 0.05 + 0.5, 0.0, 1.0)[..., None]
    bundle = np.exp(-(((e - 0.8 * poly) / (0.07 * inner)) ** 2))[..., None]
    face_col = cut * (1 - 0.18 * bundle)
    albedo = albedo * (1 - face) + face_col * face
    rgb = albedo * shade[..., None] * light.colour
    sl = (slice(y0, y1), slice(x0, x1))
    aa = cover_aa[..., None]
    sprite.rgb[sl] = sprite.rgb[sl] * (1 - aa) + rgb * aa
    sprite.alpha[sl] = np.maximum(sprite.alpha[sl], cover_aa)
    sprite.cover[sl] |= inside
    if sprite.okra is not None:
        sprite.okra[sl] |= inside
