"""Scenes: a background, okra pods and distractors in depth order, cast shadows, the camera.

:func:`render_scene` is the entry point. Scene kinds (``KINDS``):

* ``white``: the original project's setting: one whole pod on a near-white backdrop, framed whole;
* ``shop``: 2-5 large pods in a loose row or fan on white, often cut by the frame (close shop photos);
* ``bunch``: 2-6 pods side by side on white, as in shop photos;
* ``plate``, ``wood``, ``cloth``, ``paper``, ``board``: 1-8 pods on everyday surfaces;
* ``pile``: a market pile, 16-320 overlapping pods, many cut by the frame;
* ``hands``: pods on a surface with one or two hands over them;
* ``plant``: pods upright on a stem among leaves, with the yellow okra flower (v20: and the
  cluster of flower buds that crowns the stalk; v21: some framed close on the stalk's top);
* ``negative``: no okra at all, distractors only;
* ``produce`` (v9): no okra; a product shot of one look-alike framed whole on white (most real
  photos of green vegetables): whole leeks, a mound of spinach leaves, a bunch of greens on
  stalks with its roots, or a row of cucumbers, beans, chillies, asparagus, pea pods or gourds
  laid out like the okra ``bunch`` scenes;
* ``photo``: pods composited on a real photograph (only with a ``background`` image).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from okrainsight.synth.camera import apply_camera
from okrainsight.synth.distractors import (
    DISTRACTORS,
    bud_cluster,
    flower,
    hand,
    leaf,
    leek_plant,
    random_distractor,
    roots,
    stalk,
    vine,
)
from okrainsight.synth.geometry import Tube, unit
from okrainsight.synth.pods import hsv, plant_pod_attributes, render_pod, sample_pod_attributes
from okrainsight.synth.shading import Light, Sprite, random_light, value_noise

#: Scene kinds and their weight in the random mix (``kind=None``).
KINDS: dict[str, float] = {
    "white": 0.06,
    "shop": 0.08,
    "bunch": 0.06,
    "plate": 0.06,
    "wood": 0.08,
    "cloth": 0.08,
    "paper": 0.06,
    "board": 0.06,
    "pile": 0.13,
    "hands": 0.05,
    "plant": 0.09,
    "negative": 0.13,
    "produce": 0.07,
}
#: Distractors that lie on tables and boards (flowers and vines belong to the plant scenes).
SURFACE_DISTRACTORS = ("bean", "pea_pod", "chilli", "cucumber", "gourd", "bell_pepper", "leaf")
#: Rough area of one look-alike, in units of scale squared, for heaps that cover the frame.
HEAP_AREA = {
    "bean": 0.06,
    "chilli": 0.1,
    "pea_pod": 0.1,
    "cucumber": 0.45,
    "gourd": 0.3,
    "leek": 0.2,
    "asparagus": 0.06,
}
#: Kinds only available with a real background photograph.
PHOTO_KINDS = ("photo",)

RENDERER_VERSION = "okrainsight-synth-21"


@dataclass
class Scene:
    """One rendered scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` uint8, 255 on the visible pixels of okra pods and calyx caps (stems
            too when rendered with ``include_stem=True``), else 0.
        instances: ``(H, W)`` uint16, 0 = background, ``i`` = visible mask pixels of pod ``i`` (1-based).
        pods: one dict per pod with visible pixels (see :func:`render_scene`).
        kind: the scene kind.
        distractor_mask: ``(H, W)`` bool, pixels where a distractor (or hand) is the front-most object.
        tubes: the geometry of each pod in ``pods`` (same order), for checks and tools.
        seed: the seed the scene was rendered from.
    """

    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    pods: list[dict]
    kind: str
    distractor_mask: np.ndarray
    tubes: list[Tube] = field(default_factory=list)
    seed: int = 0
    include_stem: bool = False


# ----------------------------------------------------------------------------------
# Backgrounds: float32 (H, W, 3), about 0..1
# ----------------------------------------------------------------------------------


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: int = 4) -> np.ndarray:
    return value_noise(rng, (cells, cells), (h, w))


def _bg_white(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    level = rng.uniform(0.9, 1.12)
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.015, 3)
    grad = 1 - rng.uniform(0.0, 0.08) * _lowfreq(rng, h, w, 2)
    return (level * grad[..., None] * tint).astype(np.float32)


def _bg_paper(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = hsv(rng.uniform(25, 50), rng.uniform(0.05, 0.45), rng.uniform(0.55, 0.95))
    fib = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 0.8)
    img = base * (0.94 + 0.12 * fib[..., None]) * (0.9 + 0.15 * _lowfreq(rng, h, w)[..., None])
    return img.astype(np.float32)


def _bg_wood(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    d = int(np.hypot(h, w)) + 2
    grain = cv2.resize(rng.random((d // 3, 6)).astype(np.float32), (d, d), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.random((d, 24)).astype(np.float32), (d, d), interpolation=cv2.INTER_LINEAR)
    rings = 0.5 + 0.5 * np.sin(np.linspace(0, rng.uniform(20, 80), d)[:, None] + 6 * grain)
    tex = 0.55 * rings + 0.3 * fine + 0.15 * grain
    planks = int(rng.integers(1, 5))
    for k in range(1, planks):
        tex[:, int(k * d / planks) : int(k * d / planks) + 2] = 0.0
        tex[:, int(k * d / planks) + 2 :] *= rng.uniform(0.85, 1.15)
    rot = cv2.getRotationMatrix2D((d / 2, d / 2), rng.uniform(0, 180), 1.0)
    tex = cv2.warpAffine(tex, rot, (d, d), borderMode=cv2.BORDER_REFLECT)
    tex = tex[(d - h) // 2 : (d - h) // 2 + h, (d - w) // 2 : (d - w) // 2 + w]
    light_col = hsv(rng.uniform(22, 40), rng.uniform(0.3, 0.65), rng.uniform(0.55, 0.9))
    dark_col = light_col * rng.uniform(0.45, 0.75)
    t = np.clip(tex, 0, 1)[..., None]
    return (dark_col * (1 - t) + light_col * t).astype(np.float32)


#: Muted dyes of table cloths, napkins, sacks and towels (HSV: hue degrees, saturation, value):
#: v8 adds them because real pods on plain dark, olive or grey cloth were missed.
_CLOTH_DYES = (
    (30, 0.45, 0.35),  # brown
    (35, 0.25, 0.75),  # beige / natural linen
    (75, 0.35, 0.45),  # olive
    (110, 0.2, 0.55),  # sage
    (0, 0.0, 0.3),  # charcoal
    (0, 0.0, 0.6),  # grey
    (215, 0.45, 0.35),  # navy / denim
    (5, 0.55, 0.45),  # brick red
    (280, 0.2, 0.4),  # plum
    (45, 0.6, 0.7),  # mustard
)


def _cloth_colour(rng: np.random.Generator) -> np.ndarray:
    """Half the time a muted dye of :data:`_CLOTH_DYES` (jittered), else any colour."""
    if rng.random() < 0.5:
        hue, sat, val = _CLOTH_DYES[int(rng.integers(len(_CLOTH_DYES)))]
        return hsv(
            hue + rng.normal(0, 8),
            np.clip(sat + rng.normal(0, 0.08), 0, 1),
            np.clip(val * rng.uniform(0.7, 1.3), 0.1, 1),
        )
    return hsv(rng.uniform(0, 360), rng.uniform(0.1, 0.8), rng.uniform(0.4, 0.95))


def _folds(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Shading of draped cloth: a few soft creases (lit side and shadow side) over gentle waves."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 0.85 + 0.3 * _lowfreq(rng, h, w, 5)
    for _ in range(int(rng.integers(0, 5))):
        ang = rng.uniform(0, np.pi)
        d = (xx - rng.uniform(0, w)) * np.cos(ang) + (yy - rng.uniform(0, h)) * np.sin(ang)
        width = rng.uniform(0.02, 0.08) * max(h, w)
        # derivative of a Gaussian ridge: bright on one flank, dark on the other
        shade += rng.uniform(0.15, 0.45) * (d / width) * np.exp(-0.5 * (d / width) ** 2)
    return np.clip(shade, 0.35, 1.4)


def _bg_cloth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textiles: plain dyed cloth, stripes, gingham, coarse sacking (burlap) or slubbed linen, with folds."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1 = _cloth_colour(rng)
    c2 = hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.8, 1.0))
    pattern = int(rng.choice(5, p=[0.3, 0.2, 0.15, 0.2, 0.15]))
    period = rng.uniform(12, 60)
    ang = rng.uniform(0, np.pi)
    a = xx * np.cos(ang) + yy * np.sin(ang)
    b = -xx * np.sin(ang) + yy * np.cos(ang)
    weave = 0.94 + 0.06 * np.sin(xx * 2.2) * np.sin(yy * 2.2)
    if pattern == 1:  # stripes
        t = (np.sin(a * 2 * np.pi / period) > 0).astype(np.float32)
    elif pattern == 2:  # gingham
        t = (
            (np.sin(a * 2 * np.pi / period) > 0).astype(np.float32) + (np.sin(b * 2 * np.pi / period) > 0)
        ) / 2
    else:
        t = np.zeros_like(xx)
    if pattern == 3:  # burlap / jute: coarse threads of uneven thickness, gaps between them
        c1 = hsv(rng.uniform(25, 45), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.8))
        step = rng.uniform(3.0, 7.0)
        warp = np.abs(np.sin(a * np.pi / step + 0.8 * _lowfreq(rng, h, w, 12)))
        weft = np.abs(np.sin(b * np.pi / step + 0.8 * _lowfreq(rng, h, w, 12)))
        check = np.sign(np.sin(a * np.pi / step)) * np.sign(np.sin(b * np.pi / step))
        weave = 0.55 + 0.45 * np.where(check > 0, warp, weft) ** 0.6
    elif pattern == 4:  # linen: fine weave with slubs (thick, lighter threads) along one direction
        slub = cv2.resize(
            rng.random((h // 2 + 1, w // 10 + 1)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR
        )
        slub = cv2.warpAffine(
            slub,
            cv2.getRotationMatrix2D((w / 2, h / 2), float(np.degrees(ang)), 1.0),
            (w, h),
            borderMode=cv2.BORDER_REFLECT,
        )
        weave = 0.9 + 0.08 * np.sin(xx * 2.6) * np.sin(yy * 2.6) + 0.07 * (slub - 0.5)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    return (img * (weave * _folds(rng, h, w))[..., None]).astype(np.float32)


def _bg_board(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if rng.random() < 0.5:
        return _bg_wood(rng, h, w) * np.float32(rng.uniform(1.0, 1.2))
    col = hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.7, 0.95))
    img = np.broadcast_to(col, (h, w, 3)).astype(np.float32)
    scratches = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(10, 60))):
        p = rng.uniform(0, 1, 2) * [w, h]
        a = rng.uniform(0, np.pi)
        ln = rng.uniform(10, 80)
        q = p + ln * unit(a)
        cv2.line(scratches, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1.0, 1)
    img *= (1 - 0.12 * scratches)[..., None]
    return img * (0.92 + 0.12 * _lowfreq(rng, h, w))[..., None]


def _bg_basket(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(8, 20)
    weave = 0.5 + 0.25 * np.sin(xx * 2 * np.pi / period) * np.sign(np.sin(yy * 2 * np.pi / period))
    col = hsv(rng.uniform(20, 45), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.6))
    return (col * (0.6 + 0.6 * weave)[..., None]).astype(np.float32)


def _bg_foliage(rng: np.random.Generator, h: int, w: int, light: Light) -> np.ndarray:
    base = hsv(rng.uniform(70, 130), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.45))
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    img *= (0.7 + 0.6 * _lowfreq(rng, h, w, 6))[..., None]
    scale = max(h, w) * rng.uniform(0.25, 0.5)
    for _ in range(int(rng.integers(8, 18))):
        c = (rng.uniform(0, w), rng.uniform(0, h))
        sp = leaf(rng, c, rng.uniform(0, 2 * np.pi), scale, light, (w, h))
        if sp is not None:
            _paste(img, sp)
    if rng.random() < 0.4:  # patches of sky or soil
        patch = _lowfreq(rng, h, w, 3) > rng.uniform(0.6, 0.8)
        col = hsv(rng.uniform(190, 220), 0.2, 0.9) if rng.random() < 0.5 else hsv(30, 0.4, 0.35)
        img[patch] = col
    # v13: half the time a strong defocus, as behind pods photographed on the plant
    blur = rng.uniform(1.5, 5.0) if rng.random() < 0.5 else rng.uniform(5.0, 14.0)
    return cv2.GaussianBlur(img, (0, 0), blur * max(h, w) / 512)


def _plate(rng: np.random.Generator, img: np.ndarray) -> tuple[float, float, float, float]:
    """Draw an elliptic plate onto ``img``; return its centre and half axes."""
    h, w = img.shape[:2]
    cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
    ax, ay = w * rng.uniform(0.35, 0.55), h * rng.uniform(0.38, 0.6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    col = (
        hsv(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.75, 0.98))
        if rng.random() < 0.5
        else np.array([0.95, 0.95, 0.93], np.float32)
    )
    rim = np.clip((r - 0.78) / 0.05, 0, 1) * (r < 1.0)
    shade = 1 - 0.12 * rim + 0.06 * (r < 0.78)
    inside = (r < 1.0)[..., None]
    aa = np.clip((1.0 - r) * min(ax, ay), 0, 1)[..., None]
    plate = col * shade[..., None]
    img[:] = np.where(
        inside, img * (1 - aa) + plate * aa, img * (1 - 0.25 * np.clip(1.08 - r, 0, 0.08)[..., None] / 0.08)
    )
    return cx, cy, ax * 0.75, ay * 0.75


# ----------------------------------------------------------------------------------
# Composition
# ----------------------------------------------------------------------------------


def _paste(canvas: np.ndarray, sp: Sprite) -> None:
    h, w = sp.alpha.shape
    region = canvas[sp.y0 : sp.y0 + h, sp.x0 : sp.x0 + w]
    a = sp.alpha[: region.shape[0], : region.shape[1], None]
    region[:] = region * (1 - a) + sp.rgb[: region.shape[0], : region.shape[1]] * a


def _shadow(canvas: np.ndarray, sp: Sprite, light: Light, strength: float) -> None:
    """Darken ``canvas`` under the cast shadow of ``sp`` (offset away from the light, blurred)."""
    H, W = canvas.shape[:2]
    lz = max(light.direction[2], 0.25)
    dx = -light.direction[0] / lz * sp.lift
    dy = -light.direction[1] / lz * sp.lift
    sigma = 0.8 + 0.35 * sp.lift
    pad = int(abs(dx) + abs(dy) + 3 * sigma + 2)
    h, w = sp.alpha.shape
    x0, y0 = sp.x0 - pad, sp.y0 - pad
    buf = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    ox, oy = pad + int(round(dx)), pad + int(round(dy))
    buf[oy : oy + h, ox : ox + w] = sp.alpha
    k = 2 * int(round(1.5 * sigma)) + 1  # stack blur: a fast, Gaussian-like blur of any width
    buf = cv2.stackBlur(buf, (k, k)) if k > 1 else buf
    cx0, cy0 = max(0, -x0), max(0, -y0)
    cx1, cy1 = min(buf.shape[1], W - x0), min(buf.shape[0], H - y0)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    region = canvas[y0 + cy0 : y0 + cy1, x0 + cx0 : x0 + cx1]
    region *= (1 - strength * buf[cy0:cy1, cx0:cx1])[..., None]


def _compose(
    bg: np.ndarray, sprites: list[Sprite], light: Light, shadow: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint ``sprites`` back to front.

    Returns (canvas, instance ids int32, front-most-is-distractor bool). Pod sprites get raw
    ids 1, 2, ... in the order they appear in ``sprites``.
    """
    canvas = bg.copy()
    H, W = canvas.shape[:2]
    inst = np.zeros((H, W), np.int32)
    distr = np.zeros((H, W), bool)
    pod_id = 0
    for sp in sprites:
        _shadow(canvas, sp, light, shadow)
        _paste(canvas, sp)
        h, w = sp.cover.shape
        sl = (slice(sp.y0, sp.y0 + h), slice(sp.x0, sp.x0 + w))
        cover = sp.cover[: inst[sl].shape[0], : inst[sl].shape[1]]
        inst[sl][cover] = 0
        distr[sl][cover] = sp.okra is None
        if sp.okra is not None:
            pod_id += 1
            inst[sl][sp.okra[: cover.shape[0], : cover.shape[1]]] = pod_id
    return canvas, inst, distr


def _place_pods(
    rng: np.random.Generator,
    n: int,
    scale: float,
    size: tuple[int, int],
    light: Light,
    include_stem: bool,
    region: tuple[float, float, float, float] | None = None,
    angle: float | None = None,
    angle_jitter: float = np.pi,
    whole: bool = False,
    width_boost: float = 1.0,
    tilt_prob: float = 0.0,
    batch: dict | None = None,
    layers: list[tuple[int, Sprite]] | None = None,
) -> list[Sprite]:
    """Render ``n`` pods with centres in ``region`` = (cx, cy, half_w, half_h) (default: the whole image).

    ``batch`` (attributes from :func:`sample_pod_attributes`) makes the pods one harvest: each
    takes its variety and, within a few degrees and percent, its hue, saturation and value.

    ``layers`` (v20, for piles) turns on occlusion culling: the pods are drawn front to back,
    and each leaves out the pixels that opaque pods (and the given other sprites) in front of it
    cover (:func:`okrainsight.synth.geometry.rasterise`). ``(k, sprite)`` puts ``sprite`` in
    front of every pod from the ``k``-th (0 = the front-most) on. Returned back to front, the
    layers among the pods, ready for :func:`_compose`. A pod wholly hidden is placed again,
    like one that fell outside the frame."""
    w, h = size
    cx, cy, hw, hh = region or (w / 2, h / 2, w / 2, h / 2)
    out = []
    hidden = None if layers is None else np.zeros((h, w), bool)
    pending = sorted(layers or [], key=lambda kv: kv[0])
    for i in range(n):
        while pending and pending[0][0] <= i and hidden is not None:  # layers imply hidden
            _mark_opaque(hidden, pending[0][1])
            out.append(pending.pop(0)[1])
        attrs = sample_pod_attributes(rng, scale * rng.uniform(0.85, 1.15))
        if batch is not None:
            attrs["variety"] = batch["variety"]
            attrs["hue"] = float((batch["hue"] + rng.normal(0, 4)) % 360)
            attrs["sat"] = float(np.clip(batch["sat"] * rng.uniform(0.88, 1.12), 0.05, 1.0))
            attrs["val"] = float(np.clip(batch["val"] * rng.uniform(0.85, 1.15), 0.05, 1.0))
        attrs["width"] *= width_boost
        if rng.random() < tilt_prob:
            attrs["tilt"] = float(rng.uniform(0.3, 1.1))
        for _try in range(8):
            c = (cx + rng.uniform(-hw, hw), cy + rng.uniform(-hh, hh))
            a = (
                rng.uniform(-np.pi, np.pi)
                if angle is None
                else angle + rng.uniform(-angle_jitter, angle_jitter)
            )
            sp = render_pod(attrs, c, a, light, rng, size, include_stem, hidden)
            if sp is None or sp.tube is None:
                continue
            if whole:
                bx0, by0, bx1, by1 = sp.tube.bbox(1.0)
                if bx0 < 1 or by0 < 1 or bx1 > w - 2 or by1 > h - 2:
                    attrs["length"] *= 0.85
                    attrs["width"] *= 0.85
                    attrs["cap_len"] *= 0.85
                    attrs["stem_len"] *= 0.85
                    continue
            out.append(sp)
            if hidden is not None:
                _mark_opaque(hidden, sp)
            break
    if hidden is None:
        return out
    return (out + [sp for _, sp in pending])[::-1]  # layers behind every pod go at the back


def _mark_opaque(hidden: np.ndarray, sp: Sprite) -> None:
    """Add the pixels that ``sp`` covers fully (alpha 1, so nothing behind shows) to ``hidden``."""
    h, w = sp.alpha.shape
    region = hidden[sp.y0 : sp.y0 + h, sp.x0 : sp.x0 + w]
    region |= sp.alpha[: region.shape[0], : region.shape[1]] >= 1.0


def _harvest(rng: np.random.Generator, scale: float) -> dict:
    """The shared colour of a pile's pods (v19, ``_place_pods(batch=...)``): one pod's attributes,
    saturated at least 0.4, since a whole pile is no greyer than the greyest real basket (pile_01,
    median pixel saturation 0.46; a pile drawn all grey at 0.25 had half pile_01's CIELAB chroma)."""
    batch = sample_pod_attributes(rng, scale)
    batch["sat"] = max(batch["sat"], 0.4)
    return batch


def _stalk_pods(
    rng: np.random.Generator,
    n: int,
    stem: Tube,
    scale: float,
    size: tuple[int, int],
    light: Light,
    include_stem: bool,
    along: tuple[float, float],
) -> list[Sprite]:
    """``n`` young pods (:func:`plant_pod_attributes`) growing from points along the plant's
    stalk ``stem`` (at ``along``, fractions of its length from the foot), each pointing up and
    away from it on alternating sides (v13)."""
    out = []
    side = 1.0 if rng.random() < 0.5 else -1.0
    for _ in range(n):
        attrs = plant_pod_attributes(rng, scale * rng.uniform(0.8, 1.1))
        attrs["on_stalk"] = True
        at = float(rng.uniform(*along)) * (stem.s_end - stem.s_start) + stem.s_start
        p0, p1 = stem.point_at(np.array(at - 2.0)), stem.point_at(np.array(at + 2.0))
        heading = float(np.arctan2(p1[1] - p0[1], p1[0] - p0[0]))
        a = heading + side * rng.uniform(0.12, 0.6)
        side = -side
        reach = attrs["length"] / 2 + attrs["cap_len"] + attrs["stem_len"]
        root = stem.point_at(np.array(at))
        centre = (float(root[0] + np.cos(a) * reach), float(root[1] + np.sin(a) * reach))
        sp = render_pod(attrs, centre, a, light, rng, size, include_stem)
        if sp is not None and sp.tube is not None:
            out.append(sp)
    return out


def _place_one(
    rng: np.random.Generator,
    scale: float,
    size: tuple[int, int],
    light: Light,
    include_stem: bool,
    centre: tuple[float, float],
    angle: float,
    angle_jitter: float,
    tilt_prob: float,
) -> list[Sprite]:
    """One pod centred at ``centre`` heading about ``angle`` (rows and bunches): :func:`_place_pods`."""
    region = (centre[0], centre[1], 1, 1)
    return _place_pods(
        rng,
        1,
        scale,
        size,
        light,
        include_stem,
        region,
        angle=angle,
        angle_jitter=angle_jitter,
        tilt_prob=tilt_prob,
    )


def _distractors(
    rng: np.random.Generator,
    n: int,
    scale: float,
    size: tuple[int, int],
    light: Light,
    names: tuple[str, ...] | None = None,
) -> list[Sprite]:
    w, h = size
    out = []
    for _ in range(n):
        c = (rng.uniform(0, w), rng.uniform(0, h))
        sp = random_distractor(rng, c, rng.uniform(-np.pi, np.pi), scale, light, size, names)
        if sp is not None:
            out.append(sp)
    return out


def _heap(rng: np.random.Generator, name: str, size: tuple[int, int], light: Light) -> list[Sprite]:
    """v8: a market heap of one look-alike ``name`` (a key of :data:`HEAP_AREA`) that covers the
    frame 2 to 3 times over, edge to edge, as okra piles do: a real heap of cucumbers was
    called okra, and dense and elongated is not okra either. Sizes log-uniform, 0.2-0.8 of the
    short side."""
    w, h = size
    scale = min(w, h) * float(np.exp(rng.uniform(np.log(0.2), np.log(0.8))))
    cover = rng.uniform(2.0, 3.0)
    # small look-alikes (beans) need many sprites; keep them at most 150 by a larger size
    scale = max(scale, float(np.sqrt(cover * w * h / (HEAP_AREA[name] * 150))))
    n = int(np.clip(cover * w * h / (HEAP_AREA[name] * scale * scale), 8, 150))
    return _distractors(rng, n, scale, size, light, (name,))


def _stalk_bunch(
    rng: np.random.Generator,
    tie: np.ndarray,
    angle: float,
    scale: float,
    light: Light,
    size: tuple[int, int],
    spread: float = 0.5,
    reach: tuple[float, float] = (0.3, 0.9),
    leaf_size: tuple[float, float] = (0.5, 0.9),
) -> list[Sprite]:
    """6-17 stalks from the ``tie`` point ``(x, y)`` fanning out towards ``angle`` (normal spread
    ``spread`` rad), each with a leaf at its end (spinach, kale); stalks reach ``reach`` x
    ``scale``, leaves are ``leaf_size`` x ``scale`` (the :func:`leaf` scale)."""
    out: list[Sprite] = []
    for _ in range(int(rng.integers(6, 18))):
        a = angle + rng.normal(0, spread)
        far = scale * rng.uniform(*reach)
        stalk = vine(rng, tuple(tie + 0.35 * far * unit(a)), a, far * 0.25, light, size)
        if stalk is not None:
            out.append(stalk)
        tip = tie + far * unit(a)
        lf = leaf(rng, (float(tip[0]), float(tip[1])), a, scale * rng.uniform(*leaf_size), light, size)
        if lf is not None:
            out.append(lf)
    return out


def _greens(rng: np.random.Generator, scale: float, size: tuple[int, int], light: Light) -> list[Sprite]:
    """Leafy greens without okra: a bunch of leaves on stalks fanning out from one point
    (spinach, kale), or a loose heap of leaves filling much of the frame (salad, loose spinach)."""
    w, h = size
    out: list[Sprite] = []
    if rng.random() < 0.5:  # a bunch: stalks from a tied point, leaves at their ends
        c = np.array([w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)])
        out += _stalk_bunch(rng, c, rng.uniform(-np.pi, np.pi), scale, light, size)
    else:  # a heap of loose leaves
        for _ in range(int(rng.integers(8, 30))):
            c = (rng.uniform(0, w), rng.uniform(0, h))
            lf = leaf(rng, c, rng.uniform(-np.pi, np.pi), scale * rng.uniform(0.4, 0.9), light, size)
            if lf is not None:
                out.append(lf)
    return out


def _row(
    rng: np.random.Generator,
    n: int,
    centre: tuple[float, float],
    angle: float,
    spacing: float,
    jitter: float,
) -> Iterator[tuple[float, float]]:
    """Centres ``(x, y)`` of ``n`` things side by side across ``angle``, ``spacing`` pixels apart
    (each gap 0.8-1.2x), shifted by ``jitter`` pixels (normal) along x; drawn lazily, so the
    caller's own random draws for each thing stay interleaved with these."""
    perp = np.array([-np.sin(angle), np.cos(angle)])
    for i in range(n):
        off = (i - (n - 1) / 2) * spacing * rng.uniform(0.8, 1.2)
        yield (centre[0] + perp[0] * off + rng.normal(0, jitter), centre[1] + perp[1] * off)


#: Look-alikes laid out in a row for ``produce`` scenes, like the pods of ``bunch`` scenes.
PRODUCE_ROWS = ("cucumber", "bean", "chilli", "asparagus", "pea_pod", "gourd", "leek", "bell_pepper")


def _produce(rng: np.random.Generator, size: tuple[int, int], light: Light) -> list[Sprite]:
    """v9: one look-alike framed whole in the middle of the frame, as in shop photos of
    vegetables (real photos of a leek, a spinach mound and a spinach bunch on white were called
    okra; the look-alikes of ``negative`` scenes lie scattered, the pods of ``white`` and
    ``bunch`` scenes centred): whole leeks, a mound of ovate leaves, a bunch on stalks with
    roots, or a row of one of :data:`PRODUCE_ROWS`. Sprites back to front."""
    w, h = size
    big = max(w, h)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    pick = rng.random()
    out: list[Sprite] = []
    if pick < 0.25:  # whole leeks side by side, roots to one side, leaves fanning to the other
        n = int(rng.integers(1, 4))
        a = float(rng.uniform(-0.7, 0.7) + rng.choice([0.0, np.pi]))
        scale = big * rng.uniform(0.3, 0.55)
        perp = np.array([-np.sin(a), np.cos(a)])
        for i in range(n):
            off = (i - (n - 1) / 2) * scale * rng.uniform(0.1, 0.25)
            c = (cx + perp[0] * off, cy + perp[1] * off)
            out += leek_plant(rng, c, a + rng.normal(0, 0.12), scale, light, size)
    elif pick < 0.5:  # a mound of ovate leaves (loose spinach, salad), lower leaves in front
        rx, ry = big * rng.uniform(0.18, 0.35), big * rng.uniform(0.1, 0.22)
        pts = [
            (cx + rng.normal(0, 0.5) * rx, cy + rng.normal(0, 0.5) * ry)
            for _ in range(int(rng.integers(12, 36)))
        ]
        for c in sorted(pts, key=lambda q: q[1]):
            lf = leaf(
                rng, c, rng.uniform(-np.pi, np.pi), big * rng.uniform(0.12, 0.25), light, size, palmate=False
            )
            if lf is not None:
                out.append(lf)
    elif pick < 0.7:  # a bunch of greens on stalks, tied, with its roots
        a = float(rng.uniform(-np.pi, np.pi))
        tie = np.array([cx, cy]) - big * 0.15 * unit(a)
        scale = big * rng.uniform(0.25, 0.45)
        # long bare stalks below small leaves, as a bunch lies in a shop photo
        out += _stalk_bunch(
            rng, tie, a, scale, light, size, spread=0.35, reach=(0.7, 1.2), leaf_size=(0.3, 0.5)
        )
        out += roots(rng, tuple(tie), a + np.pi, scale * rng.uniform(0.3, 0.6), light, size)
    else:  # a row of one look-alike, laid out like the pods of a bunch scene
        name = str(rng.choice(PRODUCE_ROWS))
        n = int(rng.integers(1, 6))
        a = float(rng.uniform(-0.6, 0.6) + rng.choice([0.0, np.pi]))
        scale = big * rng.uniform(0.35, 0.75)
        spacing = scale * rng.uniform(0.1, 0.25)
        for c in _row(rng, n, (cx, cy), a, spacing, scale * 0.05):
            sp = random_distractor(rng, c, a + rng.normal(0, 0.15), scale, light, size, (name,))
            if sp is not None:
                out.append(sp)
    return out


#: Scenes on white that lie on another surface some of the time: kind -> (chance, surfaces, their
#: weights or None for equal): v8 bunches (shop photos of pods on a napkin or a sack), v9 produce.
OFF_WHITE: dict[str, tuple[float, list[str], list[float] | None]] = {
    "bunch": (0.55, ["cloth", "wood", "paper"], [0.6, 0.25, 0.15]),
    "produce": (0.25, ["cloth", "wood", "paper", "board"], None),
}


def _background(kind: str, rng: np.random.Generator, h: int, w: int, light: Light) -> np.ndarray:
    if kind in OFF_WHITE and rng.random() < OFF_WHITE[kind][0]:
        _, surfaces, weights = OFF_WHITE[kind]
        return _background(str(rng.choice(surfaces, p=weights)), rng, h, w, light)
    if kind in ("white", "shop", "bunch", "produce"):
        return _bg_white(rng, h, w)
    if kind == "paper":
        return _bg_paper(rng, h, w)
    if kind == "wood":
        return _bg_wood(rng, h, w)
    if kind == "cloth":
        return _bg_cloth(rng, h, w)
    if kind == "board":
        return _bg_board(rng, h, w)
    if kind == "pile":
        return _bg_basket(rng, h, w) if rng.random() < 0.5 else _bg_cloth(rng, h, w)
    if kind == "plant":
        return _bg_foliage(rng, h, w, light)
    pick = rng.choice(["white", "paper", "wood", "cloth", "board", "plant", "basket"])
    if pick == "basket":
        return _bg_basket(rng, h, w)
    return _background(str(pick), rng, h, w, light)


def _photo_background(photo: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random crop of ``photo`` (uint8 RGB) resized to (h, w), as float32 0..1."""
    ph, pw = photo.shape[:2]
    target = w / h
    frac = rng.uniform(0.5, 1.0)
    cw = min(pw, int(round(min(pw, ph * target) * frac)))
    ch = min(ph, max(1, int(round(cw / target))))
    x = int(rng.integers(0, pw - cw + 1))
    y = int(rng.integers(0, ph - ch + 1))
    crop = photo[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if cw > w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interp).astype(np.float32) / 255.0


def render_scene(
    seed: int,
    size: tuple[int, int] = (512, 384),
    kind: str | None = None,
    *,
    include_stem: bool = False,
    background: np.ndarray | None = None,
) -> Scene:
    """Render one scene, deterministically from ``seed``.

    Args:
        seed: any non-negative integer; the same seed (and arguments) gives byte-identical arrays.
        size: ``(width, height)`` in pixels.
        kind: one of :data:`KINDS`, ``"photo"`` (needs ``background``), or None for a random mix.
        include_stem: put the stem (beyond the calyx cap) in the mask too.
        background: optional ``(H, W, 3)`` uint8 RGB photograph; a random crop of it becomes
            the backdrop (kind ``"photo"`` unless ``kind`` says otherwise).

    Returns:
        A :class:`Scene`. Each entry of ``scene.pods`` is a dict with ``id`` (1-based, the value
        in ``scene.instances``), ``bbox`` ``[x0, y0, x1, y1]`` of its visible pixels (x1, y1
        exclusive), ``length_px``, ``width_px`` (length with cap as projected in the
        image, and diameter, in pixels, including parts outside the frame), ``tilt`` (radians the
        cap end points towards the camera), ``curvature`` (total bend, radians), ``ridges``,
        ``hue`` (degrees), ``age`` (0..1), ``tender`` (bool), ``variety``, ``on_stalk`` (a young
        pod growing from a plant's stalk), ``area_px`` (visible
        pixels), ``visible_fraction`` and ``axis_points`` (visible ``[x, y]`` points on the
        centreline, cap to tip).
    """
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16:
        raise ValueError(f"scene size {w}x{h} is too small (16x16 at least)")
    rng = np.random.default_rng(int(seed))
    if kind is None:
        if background is not None and rng.random() < 0.85:
            kind = "photo" if rng.random() < 0.8 else "negative"
        else:
            names = list(KINDS)
            p = np.array([KINDS[k] for k in names])
            kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    if kind not in KINDS and kind not in PHOTO_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose from {', '.join([*KINDS, *PHOTO_KINDS])}")
    if kind == "photo" and background is None:
        raise ValueError("scene kind 'photo' needs a background photograph")
    light = random_light(rng)
    shadow = float(rng.uniform(0.2, 0.55))
    dim = min(w, h)
    big = max(w, h)
    sprites: list[Sprite] = []
    if background is not None:
        bg = _photo_background(background, rng, h, w)
        mean = bg.reshape(-1, 3).mean(axis=0)
        tint = mean / max(float(mean.mean()), 1e-3)
        light.colour = (light.colour * np.clip(0.75 + 0.25 * tint, 0.6, 1.4)).astype(np.float32)
        light.colour /= light.colour.max()
    else:
        bg = _background(kind, rng, h, w, light)

    if kind == "white":
        # The original's setting: one whole pod, framed by the camera.
        sprites = _place_pods(
            rng,
            1,
            big * rng.uniform(0.45, 0.9),
            (w, h),
            light,
            include_stem,
            (w / 2, h / 2, w * 0.08, h * 0.08),
            angle=rng.choice([0.0, np.pi]),
            angle_jitter=0.7,
            whole=True,
        )
    elif kind == "shop":
        # Shop photographs: a few large pods in a loose row or fan on white, often cut by the frame.
        n = int(rng.integers(2, 6))
        a = float(rng.uniform(-0.5, 0.5) + rng.choice([0.0, np.pi]))
        perp = np.array([-np.sin(a), np.cos(a)])
        scale = big * rng.uniform(0.4, 1.05)
        spacing = scale * rng.uniform(0.14, 0.3)
        fan = rng.uniform(0.0, 0.5)
        for i in range(n):
            k = i - (n - 1) / 2
            off = k * spacing * rng.uniform(0.85, 1.15)
            c = (
                w / 2 + perp[0] * off + rng.normal(0, scale * 0.08),
                h / 2 + perp[1] * off + rng.normal(0, scale * 0.03),
            )
            sprites += _place_one(
                rng, scale, (w, h), light, include_stem, c, a + k * fan / max(n - 1, 1), 0.15, 0.3
            )
    elif kind == "bunch":
        n = int(rng.integers(2, 7))
        a = float(rng.uniform(-0.6, 0.6) + rng.choice([0.0, np.pi]))
        scale = big * rng.uniform(0.35, 0.8)
        spacing = scale * rng.uniform(0.12, 0.2)
        for c in _row(rng, n, (w / 2, h / 2), a, spacing, scale * 0.05):
            # v6: bunches on white often show the cut stem faces (pods pointing at the camera).
            sprites += _place_one(rng, scale, (w, h), light, include_stem, c, a, 0.12, 0.35)
        if rng.random() < 0.3:
            sprites += _distractors(rng, 1, scale * 0.7, (w, h), light, SURFACE_DISTRACTORS)
    elif kind in ("plate", "wood", "cloth", "paper", "board", "photo"):
        region = None
        if kind == "plate":
            region = _plate(rng, bg)
        n = int(rng.integers(1, 9))
        scale = dim * rng.uniform(0.25, 0.85)
        items = _place_pods(rng, n, scale, (w, h), light, include_stem, region, tilt_prob=0.25)
        items += _distractors(rng, int(rng.integers(0, 4)), scale, (w, h), light, SURFACE_DISTRACTORS)
        order = rng.permutation(len(items))
        sprites = [items[i] for i in order]
    elif kind == "pile":
        shadow = float(rng.uniform(0.35, 0.75))  # v11: pods lie on pods; contact shadows run deep
        # Market photographs are often taken from afar: pods from a fifth of the frame up.
        scale = dim * float(np.exp(rng.uniform(np.log(0.2), np.log(1.0))))
        a = rng.uniform(-np.pi, np.pi)
        # Enough pods to cover the frame two to three times over (pod area ~ 0.1 length^2):
        # market piles show pods to the edges, with little or no background between them.
        cover = rng.uniform(1.6, 3.0)
        # v6: up to 180 pods, so that far-away piles of small pods stay dense; v20: up to 320 (a
        # real basket of pods a seventh of the frame long was lost where 180 left gaps between them)
        n = int(np.clip(cover * w * h / (0.1 * scale * scale), 16, 320))
        others = []
        if rng.random() < 0.4:
            others = _distractors(
                rng, int(rng.integers(1, 4)), scale, (w, h), light, ("chilli", "bean", "leaf")
            )
        sprites = _place_pods(
            rng,
            n,
            scale,
            (w, h),
            light,
            include_stem,
            (w / 2, h / 2, w * 0.6, h * 0.6),
            angle=a,
            angle_jitter=rng.uniform(0.3, np.pi),
            # v14: slender pods too (a real basket of thin pods was called a heap of beans)
            width_boost=rng.uniform(0.75, 1.3),
            tilt_prob=rng.uniform(0.2, 0.6),
            # v19: seven piles in ten are one harvest, one colour (a real basket is all blue-grey
            # green, another all grass green), not a pod-by-pod mix of every variety
            batch=_harvest(rng, scale) if rng.random() < 0.7 else None,
            # v20: drawn front to back, the pods skip what the pods and look-alikes in front of
            # them hide (two thirds of a pile's pixels), each look-alike at a random depth
            layers=[(int(rng.integers(0, n + 1)), sp) for sp in others],
        )
        # lower layers of the pile get less light; v11: up to near black in the gaps, as a real
        # basket shows (a tenth of its green pixels under HSV value 0.13)
        depth = rng.uniform(0.15, 0.7)
        for z, sp in enumerate(sprites):
            sp.lift *= 0.4
            sp.rgb *= np.float32(1.0 - depth * (1.0 - z / max(len(sprites) - 1, 1)))
    elif kind == "hands":
        scale = dim * rng.uniform(0.4, 0.8)
        sprites = _place_pods(rng, int(rng.integers(1, 6)), scale, (w, h), light, include_stem)
        for _ in range(int(rng.integers(1, 3))):
            edge = rng.integers(0, 4)
            c = [
                (rng.uniform(0, w), -scale * 0.2),
                (w + scale * 0.2, rng.uniform(0, h)),
                (rng.uniform(0, w), h + scale * 0.2),
                (-scale * 0.2, rng.uniform(0, h)),
            ][int(edge)]
            toward = np.arctan2(h / 2 - c[1], w / 2 - c[0]) + rng.normal(0, 0.3)
            c = (c[0] + np.cos(toward) * scale * 0.6, c[1] + np.sin(toward) * scale * 0.6)
            sp = hand(rng, c, toward, scale, light, (w, h))
            if sp is not None:
                sprites.append(sp)
    elif kind == "plant":
        scale = dim * rng.uniform(0.35, 0.7)
        back = _distractors(rng, int(rng.integers(0, 3)), scale, (w, h), light, ("leaf", "vine"))
        stem_x = w * rng.uniform(0.3, 0.7)
        close = False
        if rng.random() < 0.6:  # v13: young pods growing from the thick main stalk, as photographed
            # v21: two in five framed close on the stalk's top, its buds, flower and youngest pods
            # filling the frame (as plant_01, whose large buds were called okra)
            close = rng.random() < 0.4
            length, along = None, (0.15, 0.75)
            centre = (stem_x, h * rng.uniform(0.5, 0.8))
            if close:
                scale = dim * rng.uniform(0.6, 0.9)
                length, along = scale * rng.uniform(1.3, 2.0), (0.45, 0.85)
                centre = (stem_x, h * rng.uniform(0.25, 0.45) + length / 2)  # room for the buds above
            stem = stalk(rng, centre, -np.pi / 2 + rng.normal(0, 0.15), scale, light, (w, h), length)
            pods = (
                []
                if stem is None or stem.tube is None
                else _stalk_pods(
                    rng, int(rng.integers(1, 4)), stem.tube, scale, (w, h), light, include_stem, along
                )
            )
        else:
            stem = vine(rng, (stem_x, h / 2), -np.pi / 2 + rng.normal(0, 0.2), dim * 0.6, light, (w, h))
            pods = _place_pods(
                rng,
                int(rng.integers(1, 4)),
                scale,
                (w, h),
                light,
                include_stem,
                (stem_x, h * 0.5, w * 0.25, h * 0.25),
                angle=-np.pi / 2,
                angle_jitter=0.45,
            )
        front = [stem] if stem is not None else []
        # v20: flower buds crown the plant (a real plant's buds were called okra with its pods)
        # and sit in the leaf axils along it: at the stalk's tip when the tip is in the frame, and
        # (always when it is not) at a point along the stalk's upper, in-frame part
        if stem is not None and stem.tube is not None and (close or rng.random() < 0.75):
            tube = stem.tube
            along = np.linspace(tube.s_end - 1.0, tube.s_start + 1.0, 64)
            pts = tube.point_at(along)
            seen = np.flatnonzero((pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h))
            picks = seen[:1] if len(seen) and seen[0] == 0 else seen[:0]
            if len(seen) and (len(picks) == 0 or rng.random() < 0.4):
                axils = seen[len(picks) : max(len(picks) + 1, len(seen) * 2 // 3)]  # never the tip twice
                if len(axils):
                    picks = np.append(picks, rng.choice(axils))
            for i in picks:
                p1, p0 = pts[max(int(i) - 1, 0)], pts[min(int(i) + 1, len(pts) - 1)]
                heading = float(np.arctan2(p1[1] - p0[1], p1[0] - p0[0]))
                if i > 0:  # from an axil the buds lean out of the stalk's line
                    heading += rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.9)
                at = (float(pts[i][0]), float(pts[i][1]))
                front += bud_cluster(rng, at, heading, scale, light, (w, h))
        elif rng.random() < 0.4:
            at = (stem_x + rng.normal(0, w * 0.1), h * rng.uniform(0.1, 0.45))
            front += bud_cluster(rng, at, -np.pi / 2 + rng.normal(0, 0.3), scale, light, (w, h))
        extras = []
        if rng.random() < 0.7:
            fl = flower(
                rng,
                (stem_x + rng.normal(0, w * 0.15), h * rng.uniform(0.15, 0.6)),
                rng.uniform(0, 6.3),
                scale,
                light,
                (w, h),
            )
            if fl is not None:
                extras.append(fl)
        extras += _distractors(
            rng, int(rng.integers(0 if close else 1, 2 if close else 4)), scale, (w, h), light, ("leaf",)
        )
        order = rng.permutation(len(pods) + len(extras))
        mixed = [(pods + extras)[i] for i in order]
        # framed close, the leaves and flower fall behind the stalk, its buds and its pods
        sprites = back + extras + front + pods if close else back + front + mixed
    elif kind == "negative":
        scale = dim * rng.uniform(0.35, 0.85)
        names = tuple(DISTRACTORS)
        pick = rng.random()
        if pick < 0.3:  # leafy greens (spinach, kale, lettuce), half the time on white as in shop photos
            if background is None and rng.random() < 0.5:
                bg = _bg_white(rng, h, w)
            sprites = _greens(rng, scale, (w, h), light)
        elif pick < 0.65:  # a pile of one look-alike, as in market photos of beans or chillies
            one = str(rng.choice(list(HEAP_AREA)))
            if rng.random() < 0.5:
                if background is None:
                    bg = _background("pile", rng, h, w, light)
                sprites = _heap(rng, one, (w, h), light)
            else:
                counts = {"bean": (10, 40), "chilli": (6, 24), "pea_pod": (5, 18), "asparagus": (5, 16)}
                count = counts.get(one, (3, 9))
                sprites = _distractors(rng, int(rng.integers(*count)), scale, (w, h), light, (one,))
        else:
            sprites = _distractors(rng, int(rng.integers(1, 8)), scale, (w, h), light, names)
    elif kind == "produce":
        sprites = _produce(rng, (w, h), light)

    canvas, inst_raw, distr = _compose(bg, sprites, light, shadow)
    image = apply_camera(canvas, rng)
    return _finish(image, inst_raw, distr, sprites, kind, int(seed), include_stem)


def render_lookalike_scene(
    seed: int, size: tuple[int, int], name: str, count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A distractor-only scene holding one kind of look-alike, deterministically from ``seed``.

    Built like the ``negative`` scenes of :func:`render_scene` (a random everyday backdrop, light,
    cast shadows and camera) but with ``count`` (default 1 to 6) sprites of the single distractor
    ``name`` (one of :data:`DISTRACTORS`), so that every kind is seen as often as the others
    (the grader's okra-likeness training uses one per kind of :data:`SURFACE_DISTRACTORS`).

    Returns:
        ``(image, mask)``: ``(H, W, 3)`` uint8 RGB and ``(H, W)`` bool, the front-most
        distractor pixels. ``size`` is ``(width, height)``.

    Raises:
        ValueError: ``name`` is no distractor of the renderer.
    """
    if name not in DISTRACTORS:
        raise ValueError(f"unknown distractor {name!r}; choose from {', '.join(DISTRACTORS)}")
    w, h = int(size[0]), int(size[1])
    kind_key = SURFACE_DISTRACTORS.index(name) if name in SURFACE_DISTRACTORS else 99
    rng = np.random.default_rng([int(seed), kind_key])
    light = random_light(rng)
    shadow = float(rng.uniform(0.2, 0.55))
    bg = _background("negative", rng, h, w, light)
    scale = min(w, h) * rng.uniform(0.35, 0.85)
    n = int(count) if count is not None else int(rng.integers(1, 7))
    sprites = _distractors(rng, n, scale, (w, h), light, (name,))
    canvas, _, distr = _compose(bg, sprites, light, shadow)
    return apply_camera(canvas, rng), distr


def _finish(
    image: np.ndarray,
    inst_raw: np.ndarray,
    distr: np.ndarray,
    sprites: list[Sprite],
    kind: str,
    seed: int,
    include_stem: bool,
) -> Scene:
    """Renumber visible pods 1..n, measure them, and build the :class:`Scene`."""
    h, w = inst_raw.shape
    pods: list[dict] = []
    tubes: list[Tube] = []
    raw_sprites = [sp for sp in sprites if sp.okra is not None]
    lut = np.zeros(max(len(raw_sprites), int(inst_raw.max(initial=0))) + 1, np.uint16)
    counts = np.bincount(inst_raw.ravel(), minlength=len(lut))
    # every pod's bounding box in one pass over the image (one np.nonzero per pod cost a pile
    # of 300 pods a third of a second)
    ys_all, xs_all = np.nonzero(inst_raw)
    ids = inst_raw[ys_all, xs_all]
    box_lo = np.stack([np.full(len(lut), w), np.full(len(lut), h)])
    box_hi = np.full((2, len(lut)), -1)
    np.minimum.at(box_lo[0], ids, xs_all)
    np.minimum.at(box_lo[1], ids, ys_all)
    np.maximum.at(box_hi[0], ids, xs_all)
    np.maximum.at(box_hi[1], ids, ys_all)
    for rid, sp in enumerate(raw_sprites, 1):  # raw ids as :func:`_compose` numbered them
        info = sp.info or {}
        if counts[rid] == 0 or sp.tube is None:
            continue
        new_id = len(pods) + 1
        lut[rid] = new_id
        tube = sp.tube
        s = np.linspace(-tube.cap_len, tube.s_end - 1.0, 32)
        pts = np.round(tube.point_at(s), 2)
        xi, yi = np.floor(pts[:, 0] + 0.5).astype(int), np.floor(pts[:, 1] + 0.5).astype(int)
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        ok[ok] = inst_raw[yi[ok], xi[ok]] == rid
        # culled pile pods carry their full area; an estimate can fall short for a sliver at the
        # frame's edge, so it is never taken below what shows
        full = max(info.get("full_px", int(sp.okra.sum())), int(counts[rid]))
        pods.append(
            {
                "id": new_id,
                "bbox": [
                    int(box_lo[0, rid]),
                    int(box_lo[1, rid]),
                    int(box_hi[0, rid]) + 1,
                    int(box_hi[1, rid]) + 1,
                ],
                # ``info`` holds the projected (already foreshortened) length of a tilted pod.
                "length_px": round(float(info["length"] + info["cap_len"]), 2),
                "width_px": round(float(info["width"]), 2),
                "tilt": round(float(info.get("tilt", 0.0)), 4),
                "curvature": round(float(info["curvature"]), 4),
                "ridges": int(info["ridges"]),
                "hue": round(float(info["hue"]), 2),
                "age": round(float(info["age"]), 4),
                "tender": bool(info["tender"]),
                "variety": str(info["variety"]),
                "on_stalk": bool(info.get("on_stalk", False)),
                "area_px": int(counts[rid]),
                "visible_fraction": round(float(counts[rid]) / max(full, 1), 4),
                "axis_points": [[float(x), float(y)] for x, y in pts[ok]],
            }
        )
        tubes.append(tube)
    instances = lut[inst_raw]
    mask = np.where(instances > 0, 255, 0).astype(np.uint8)
    return Scene(
        image=image,
        mask=mask,
        instances=instances,
        pods=pods,
        kind=kind,
        distractor_mask=distr,
        tubes=tubes,
        seed=seed,
        include_stem=include_stem,
    )
