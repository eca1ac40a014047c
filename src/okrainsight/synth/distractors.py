"""Things that are not okra and must never enter the mask.

Each is built to share *some* okra cues and lack others, so that a network must learn
the real ones (ridges, calyx cap, hairs, tapered tip):

* green bean: long, thin, green, smooth, seed bumps, no cap, no ridges;
* pea pod: flat, bumpy, glossy, small star calyx;
* chilli: okra-like silhouette *with* a cap and stem, but glossy, smooth, no ridges, no hair;
* cucumber and zucchini: thick, rounded ends, stripes, warts, waxy;
* ridge gourd: ridged like okra, but large, dull, blunt ended, sharp dark ridge lines;
* leek and spring onion: long, flat, finely striped green leaves running into a pale white
  shank, no ridges, no cap, no hair;
* asparagus: a thin smooth spear with a cut pale butt and a closed, scaly, often purplish tip;
* bell pepper, leaves (ovate and palmate, as on the okra plant), vines and stems (v13: the
  plant's thick, hairy main stalk, :func:`stalk`),
  flowers (the yellow okra flower with a dark centre), hands.

v9 adds two builders that return several sprites (not in :data:`DISTRACTORS`): a whole leek
as sold (:func:`leek_plant`: pale shank, root tuft, a fan of flat striped leaves) and a root
tuft (:func:`roots`, for leeks and spinach bunches).

Every builder has the signature ``(rng, centre, angle, scale, light, image_size)``
(``scale`` = typical pod length in pixels) and returns a :class:`Sprite` or None.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from okrainsight.synth.geometry import Tube, centreline, generic_profile, okra_profile, unit
from okrainsight.synth.pods import hsv
from okrainsight.synth.shading import Light, Material, Sprite, shade_height, tube_sprite

Centre = tuple[float, float]
Size = tuple[int, int]


def _tube(
    s_tab: np.ndarray,
    r_tab: np.ndarray,
    centre: Centre,
    angle: float,
    rng: np.random.Generator,
    curvature: float,
    wiggle: float = 0.0,
    cap_len: float = 0.0,
    stem_len: float = 0.0,
) -> Tube:
    nodes, s = centreline(
        (0.0, 0.0), angle, float(s_tab[0]), float(s_tab[-1]), curvature, wiggle, rng.uniform(0, 6.28)
    )
    tube = Tube(nodes, s, s_tab, r_tab, cap_len=cap_len, stem_len=stem_len)
    mid = tube.point_at(np.array(0.5 * (s_tab[0] + s_tab[-1])))
    tube.nodes = nodes - mid + np.asarray(centre, np.float64)
    return tube


def bean(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(0.9, 1.4)
    s, r = generic_profile(
        L,
        L * rng.uniform(0.045, 0.075),
        0.06,
        rng.uniform(0.08, 0.2),
        0.5,
        1.3,
        bumps=int(rng.integers(5, 9)),
        bump_depth=rng.uniform(0.03, 0.1),
    )
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.5), rng.normal(0, 0.15))
    mat = Material(
        base=hsv(rng.uniform(75, 115), rng.uniform(0.45, 0.8), rng.uniform(0.4, 0.75)),
        specular=rng.uniform(0.15, 0.4),
        shininess=rng.uniform(15, 40),
        mottle=0.06,
        speckle=rng.uniform(0, 0.5),
        blemish=rng.uniform(0, 0.3),
    )
    return tube_sprite(tube, mat, light, rng, size, "bean")


def pea_pod(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(0.6, 0.95)
    s, r = generic_profile(
        L,
        L * rng.uniform(0.14, 0.2),
        rng.uniform(0.1, 0.2),
        rng.uniform(0.12, 0.25),
        0.9,
        1.3,
        bumps=int(rng.integers(5, 9)),
        bump_depth=rng.uniform(0.06, 0.14),
    )
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.5))
    mat = Material(
        base=hsv(rng.uniform(85, 105), rng.uniform(0.45, 0.7), rng.uniform(0.55, 0.8)),
        specular=rng.uniform(0.2, 0.45),
        shininess=rng.uniform(20, 50),
        flat=1.0,
        mottle=0.06,
    )
    return tube_sprite(tube, mat, light, rng, size, "pea_pod")


def chilli(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(0.6, 1.1)
    W = L * rng.uniform(0.08, 0.16)
    cap, stem = L * rng.uniform(0.04, 0.08), L * rng.uniform(0.12, 0.3)
    s, r = okra_profile(
        L,
        W,
        cap,
        stem,
        W / 2 * rng.uniform(0.2, 0.3),
        rng.uniform(0.15, 0.5),
        rng.uniform(1.0, 2.0),
        rng.uniform(0.85, 1.0),
    )
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.7), rng.normal(0, 0.2), cap, stem)
    red = rng.random() < 0.45
    base = (
        hsv(rng.uniform(-8, 18), rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.85))
        if red
        else hsv(rng.uniform(80, 120), rng.uniform(0.55, 0.9), rng.uniform(0.3, 0.7))
    )
    green = hsv(rng.uniform(80, 110), 0.6, rng.uniform(0.35, 0.55))
    mat = Material(
        base=base,
        cap=green,
        stem=green,
        cut=hsv(60, 0.3, 0.75),
        specular=rng.uniform(0.5, 0.9),
        shininess=rng.uniform(40, 120),
        mottle=0.04,
        flat=rng.uniform(0, 0.3),
    )
    return tube_sprite(tube, mat, light, rng, size, "chilli")


def cucumber(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    zucchini = rng.random() < 0.4
    L = scale * rng.uniform(1.0, 1.7)
    W = L * (rng.uniform(0.17, 0.26) if zucchini else rng.uniform(0.2, 0.32))
    s, r = generic_profile(
        L,
        W,
        rng.uniform(0.08, 0.15),
        rng.uniform(0.08, 0.2),
        0.5,
        0.5,
        bulge=rng.uniform(0.05, 0.2) if zucchini else 0.0,
    )
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.15))
    hue = rng.uniform(85, 130)
    base = hsv(hue, rng.uniform(0.5, 0.9), rng.uniform(0.18, 0.45))
    stripe = hsv(hue - 15, 0.4, rng.uniform(0.45, 0.75))
    if not zucchini and rng.random() < 0.4:
        # v8: pale cucumbers (Persian, Indian, pickling) with cream stripes; a real heap of them
        # was called okra, as pale, striped, elongated and piled is what market okra looks like.
        hue = rng.uniform(70, 100)
        base = hsv(hue, rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.75))
        stripe = hsv(hue - rng.uniform(10, 25), rng.uniform(0.1, 0.35), rng.uniform(0.8, 0.95))
    mat = Material(
        base=base,
        tip=base * rng.uniform(0.9, 1.3),
        specular=rng.uniform(0.25, 0.6),
        shininess=rng.uniform(20, 60),
        stripes=int(rng.integers(3, 8)),
        stripe_colour=stripe,
        warts=0.0 if zucchini else rng.uniform(0.3, 1.0),
        speckle=rng.uniform(0.2, 1.0),
        mottle=0.08,
    )
    return tube_sprite(tube, mat, light, rng, size, "zucchini" if zucchini else "cucumber")


def gourd(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(1.2, 2.0)
    W = L * rng.uniform(0.12, 0.2)
    s, r = generic_profile(
        L, W, rng.uniform(0.1, 0.25), rng.uniform(0.05, 0.12), 0.7, 0.5, bulge=rng.uniform(0.0, 0.4)
    )
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.4))
    ridged = rng.random() < 0.7
    base = hsv(rng.uniform(80, 110), rng.uniform(0.35, 0.7), rng.uniform(0.3, 0.6))
    mat = Material(
        base=base,
        ridges=int(rng.integers(8, 11)) if ridged else 0,
        ridge_amp=rng.uniform(0.06, 0.1),
        groove_dark=rng.uniform(0.5, 0.8),
        specular=rng.uniform(0.1, 0.3),
        shininess=20,
        mottle=0.1,
        speckle=0.5,
        ridge_phase=rng.uniform(0, 6.28),
        stripes=0 if ridged else int(rng.integers(4, 9)),
        stripe_colour=base * 1.5,
    )
    return tube_sprite(tube, mat, light, rng, size, "gourd")


def leek(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(1.1, 2.2)
    W = L * rng.uniform(0.04, 0.14)
    # v = 0 is the pointed (or cut) leaf end, v = 1 the blunt root end with its pale shank.
    s, r = generic_profile(L, W, rng.uniform(0.04, 0.15), rng.uniform(0.01, 0.04), rng.uniform(0.8, 1.6), 0.3)
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.3), rng.normal(0, 0.1))
    hue = rng.uniform(85, 130)
    mat = Material(
        base=hsv(hue, rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6)),
        tip=hsv(rng.uniform(55, 85), rng.uniform(0.05, 0.25), rng.uniform(0.8, 0.95)),
        specular=rng.uniform(0.15, 0.5),
        shininess=rng.uniform(15, 50),
        stripes=int(rng.integers(8, 18)),
        stripe_colour=hsv(hue - 10, 0.3, rng.uniform(0.5, 0.8)),
        flat=rng.uniform(0.4, 1.0),
        mottle=0.05,
        wrap=rng.uniform(0.0, 0.4),
    )
    return tube_sprite(tube, mat, light, rng, size, "leek")


def roots(
    rng: np.random.Generator, point: Centre, angle: float, length: float, light: Light, size: Size
) -> list[Sprite]:
    """v9: a tuft of 8 to 24 thin beige-brown roots spreading from ``point`` towards ``angle``
    (the root plate of a leek or a spinach bunch); ``length`` is the longest root in pixels."""
    out: list[Sprite] = []
    for _ in range(int(rng.integers(8, 25))):
        a = angle + rng.normal(0, 0.6)
        ln = length * rng.uniform(0.3, 1.0)
        s, r = generic_profile(ln, max(1.2, ln * rng.uniform(0.015, 0.04)), 0.05, 0.3, 0.4, 1.2)
        c = np.asarray(point, np.float64) + 0.5 * ln * unit(a)
        tube = _tube(s, r, (float(c[0]), float(c[1])), a + np.pi, rng, rng.normal(0, 1.2), rng.normal(0, 0.4))
        mat = Material(
            base=hsv(rng.uniform(25, 45), rng.uniform(0.25, 0.55), rng.uniform(0.45, 0.8)),
            specular=0.05,
            shininess=8,
            mottle=0.1,
        )
        sp = tube_sprite(tube, mat, light, rng, size, "roots", lift=1.0)
        if sp is not None:
            out.append(sp)
    return out


def leek_plant(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> list[Sprite]:
    """v9: a whole leek as sold (a real leek was called okra): a thick pale shank with a root
    tuft at one end, splitting at the other into 3 to 7 flat, finely striped, blue-green leaves
    that fan out (v14: up to 1.5 times the shank's width, most folded down the middle);
    ``angle`` points from the roots to the leaves, ``centre`` is the junction.

    Returns the sprites back to front (leaves, shank, roots); the list may be empty when all
    of it falls outside the image.
    """
    j = np.asarray(centre, np.float64)
    leaf_len = scale * rng.uniform(0.6, 1.1)
    shank_len = leaf_len * rng.uniform(0.45, 0.9)
    shank_w = leaf_len * rng.uniform(0.09, 0.16)
    hue = rng.uniform(95, 150)
    leaves: list[Sprite] = []
    n = int(rng.integers(3, 8))
    spread = rng.uniform(0.15, 0.6)
    for k in range(n):
        a = angle + (k - (n - 1) / 2) / max(n - 1, 1) * 2 * spread + rng.normal(0, 0.06)
        ln = leaf_len * rng.uniform(0.7, 1.1)
        # v14: flat blades, often wider than the shank (a real leek's leaves were called okra)
        wd = shank_w * rng.uniform(0.8, 1.5)
        # v = 0 is the pointed leaf end, v = 1 the butt hidden in the shank
        s, r = generic_profile(ln, wd, rng.uniform(0.08, 0.25), 0.02, rng.uniform(0.9, 1.8), 0.2)
        c = j + (0.5 * ln - 0.1 * shank_len) * unit(a)
        tube = _tube(
            s, r, (float(c[0]), float(c[1])), a + np.pi, rng, rng.normal(0, 0.25), rng.normal(0, 0.05)
        )
        mat = Material(
            base=hsv(hue + rng.normal(0, 6), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.55)),
            tip=hsv(rng.uniform(70, 95), rng.uniform(0.3, 0.6), rng.uniform(0.55, 0.8)),
            specular=rng.uniform(0.1, 0.4),
            shininess=rng.uniform(10, 40),
            stripes=int(rng.integers(14, 30)),
            stripe_colour=hsv(hue, 0.25, rng.uniform(0.45, 0.7)),
            flat=rng.uniform(0.75, 1.0),
            mottle=0.05,
            wrap=rng.uniform(0.1, 0.4),
            fold=rng.uniform(0.5, 1.0) if rng.random() < 0.7 else 0.0,  # v14: folded down the middle
        )
        sp = tube_sprite(tube, mat, light, rng, size, "leek")
        if sp is not None:
            leaves.append(sp)
    # the shank: v = 0 at the junction (pale green), v = 1 at the blunt white root end
    s, r = generic_profile(shank_len, shank_w, 0.02, rng.uniform(0.03, 0.08), 0.3, 0.3)
    c = j - 0.5 * shank_len * unit(angle)
    tube = _tube(s, r, (float(c[0]), float(c[1])), angle + np.pi, rng, rng.normal(0, 0.08))
    mat = Material(
        base=hsv(rng.uniform(70, 95), rng.uniform(0.25, 0.55), rng.uniform(0.65, 0.85)),
        tip=hsv(rng.uniform(45, 70), rng.uniform(0.03, 0.12), rng.uniform(0.85, 0.97)),
        specular=rng.uniform(0.2, 0.5),
        shininess=rng.uniform(15, 40),
        stripes=int(rng.integers(10, 24)),
        stripe_colour=hsv(80, 0.1, 0.95),
        mottle=0.04,
        wrap=rng.uniform(0.2, 0.5),
    )
    shank = tube_sprite(tube, mat, light, rng, size, "leek")
    root_at = j - shank_len * unit(angle)
    tuft = roots(
        rng,
        (float(root_at[0]), float(root_at[1])),
        angle + np.pi,
        shank_w * rng.uniform(0.6, 1.4),
        light,
        size,
    )
    return leaves + ([shank] if shank is not None else []) + tuft


def asparagus(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(0.8, 1.4)
    W = L * rng.uniform(0.045, 0.08)
    # v = 0 is the cut butt, v = 1 the closed bud of the tip.
    s, r = generic_profile(
        L, W, 0.01, rng.uniform(0.08, 0.14), 0.2, rng.uniform(0.6, 1.0), bumps=int(rng.integers(6, 12)),
        bump_depth=rng.uniform(0.02, 0.06),
    )  # fmt: skip
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.2), rng.normal(0, 0.05))
    purple = rng.random() < 0.4
    mat = Material(
        base=hsv(rng.uniform(75, 100), rng.uniform(0.45, 0.75), rng.uniform(0.35, 0.65)),
        tip=hsv(rng.uniform(290, 330), 0.45, 0.35) if purple else hsv(rng.uniform(70, 90), 0.6, 0.3),
        specular=rng.uniform(0.2, 0.5),
        shininess=rng.uniform(20, 60),
        fibre=rng.uniform(0.0, 0.4),
        speckle=rng.uniform(0.0, 0.3),
        mottle=0.06,
    )
    return tube_sprite(tube, mat, light, rng, size, "asparagus")


def vine(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    L = scale * rng.uniform(1.2, 3.0)
    s, r = generic_profile(L, max(2.0, scale * rng.uniform(0.02, 0.06)), 0.02, 0.02, 0.3, 0.3)
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 1.0), rng.normal(0, 0.3))
    brown = rng.random() < 0.3
    base = (
        hsv(rng.uniform(30, 45), 0.5, 0.4)
        if brown
        else hsv(rng.uniform(75, 115), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.7))
    )
    mat = Material(base=base, specular=0.1, shininess=10, hair=rng.uniform(0, 0.5), mottle=0.1)
    return tube_sprite(tube, mat, light, rng, size, "vine")


def stalk(
    rng: np.random.Generator,
    centre: Centre,
    angle: float,
    scale: float,
    light: Light,
    size: Size,
    length: float | None = None,
) -> Sprite | None:
    """The okra plant's main stalk (v13): a thick, straight, pale and hairy green stem that pods
    grow from; not okra. ``angle`` heads from its foot to its top; ``centre`` is its middle;
    ``length`` in pixels (default 2-3.5 ``scale``); the sprite keeps its tube so that pods can be
    attached along it."""
    L = scale * rng.uniform(2.0, 3.5) if length is None else float(length)
    s, r = generic_profile(L, max(3.0, scale * rng.uniform(0.08, 0.14)), 0.01, 0.01, 0.2, 0.2)
    tube = _tube(s, r, centre, angle, rng, rng.normal(0, 0.25), rng.normal(0, 0.04))
    base = hsv(rng.uniform(75, 105), rng.uniform(0.2, 0.5), rng.uniform(0.45, 0.75))
    if rng.random() < 0.25:  # some varieties have a reddish stalk
        base = base * 0.6 + hsv(rng.uniform(0, 25), 0.5, 0.5) * 0.4
    mat = Material(
        base=base, specular=0.05, shininess=8, hair=rng.uniform(0.6, 1.2), speckle=0.3, mottle=0.08
    )
    return tube_sprite(tube, mat, light, rng, size, "vine")


def _bud_part(
    rng: np.random.Generator,
    s_tab: np.ndarray,
    r_tab: np.ndarray,
    centre: np.ndarray,
    angle: float,
    curvature: float,
    mat: Material,
    light: Light,
    size: Size,
) -> Sprite | None:
    """One tube of a bud cluster (a bud, its stalk or a bract) centred on ``centre`` ``(x, y)``."""
    tube = _tube(s_tab, r_tab, (float(centre[0]), float(centre[1])), angle, rng, curvature)
    return tube_sprite(tube, mat, light, rng, size, "bud")


def bud_cluster(
    rng: np.random.Generator, top: Centre, angle: float, scale: float, light: Light, size: Size
) -> list[Sprite]:
    """v20: the cluster of flower buds at the tip of an okra plant's stalk; not okra.

    A real plant's buds (``plant_01``) were called okra with its pods: each is a short, pale,
    ridged cone, a small pod to a network, but it is ovoid with a sharp tip and wrapped in 7 to
    10 thread-thin bracts (the epicalyx) that splay from its foot, most behind it. 2 to 7 buds
    fan out from ``top`` (image pixels, the stalk's tip) around ``angle`` (radians, image axes:
    x right, y down; the stalk's heading), each 0.18-0.4 ``scale`` long on a short stalk.

    Returns the sprites back to front (stalklets, bracts behind, buds, bracts in front), kind
    "bud"; the list is empty when all of it falls outside the image ``size`` (width, height).
    """
    t = np.asarray(top, np.float64)
    hue = rng.uniform(62, 100)
    n = int(rng.integers(2, 8))
    back: list[Sprite] = []
    mid: list[Sprite] = []
    front: list[Sprite] = []
    for k in range(n):
        a = angle + (k - (n - 1) / 2) / max(n - 1, 1) * rng.uniform(0.6, 1.8) + rng.normal(0, 0.15)
        L = scale * rng.uniform(0.18, 0.4)
        reach = scale * rng.uniform(0.0, 0.12)
        foot = t + reach * unit(a)
        if reach > 2.0:  # the bud's own short stalk, from the cluster's centre
            s, r = generic_profile(reach, max(1.5, L * 0.12), 0.05, 0.05, 0.3, 0.3)
            c = t + 0.5 * reach * unit(a)
            mat = Material(
                base=hsv(hue + rng.normal(0, 5), rng.uniform(0.3, 0.55), rng.uniform(0.45, 0.7)),
                specular=0.05,
                hair=rng.uniform(0.3, 0.9),
            )
            sp = _bud_part(rng, s, r, c, a, 0.0, mat, light, size)
            if sp is not None:
                back.append(sp)
        # the bud: round foot (v = 0), long pointed tip (v = 1), ridged like the pod it will become
        s, r = generic_profile(
            L,
            L * rng.uniform(0.35, 0.55),
            rng.uniform(0.15, 0.3),
            rng.uniform(0.5, 0.75),
            0.5,
            rng.uniform(1.3, 2.2),
        )
        c = foot + 0.5 * L * unit(a)
        mat = Material(
            base=hsv(hue + rng.normal(0, 5), rng.uniform(0.25, 0.55), rng.uniform(0.55, 0.85)),
            tip=hsv(hue + rng.uniform(-15, 5), rng.uniform(0.2, 0.5), rng.uniform(0.6, 0.9)),
            ridges=int(rng.integers(5, 9)),
            ridge_amp=rng.uniform(0.1, 0.3),
            groove_dark=rng.uniform(0.1, 0.3),
            specular=rng.uniform(0.05, 0.2),
            hair=rng.uniform(0.4, 1.0),
            mottle=0.08,
        )
        sp = _bud_part(rng, s, r, c, a, rng.normal(0, 0.3), mat, light, size)
        if sp is not None:
            mid.append(sp)
        # the epicalyx: thread-thin bracts splaying from the bud's foot, some behind, some in front
        for _ in range(int(rng.integers(7, 11))):
            b = a + rng.uniform(-0.6, 0.6)
            bl = L * rng.uniform(0.6, 1.1)
            s, r = generic_profile(bl, max(1.0, L * rng.uniform(0.025, 0.045)), 0.05, 0.3, 0.3, 1.5)
            c = foot + 0.5 * bl * unit(b)
            mat = Material(
                base=hsv(hue + rng.normal(0, 8), rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.75)),
                specular=0.05,
                hair=rng.uniform(0.2, 0.8),
            )
            sp = _bud_part(rng, s, r, c, b, rng.normal(0, 1.0), mat, light, size)
            if sp is not None:
                (front if rng.random() < 0.3 else back).append(sp)
    return back + mid + front


def _dome(cover: np.ndarray, blur: float) -> np.ndarray:
    """A dome height field over the bool silhouette ``cover``, smoothed by ``blur`` x its inradius."""
    dist = cv2.distanceTransform(cover.astype(np.uint8), cv2.DIST_L2, 5)
    rmax = max(float(dist.max()), 1.0)
    height = np.sqrt(np.clip(2 * rmax * dist - dist * dist, 0, None))
    return cv2.GaussianBlur(height, (0, 0), max(1.0, blur * rmax))


def _blob_sprite(
    cover: np.ndarray,
    x0: int,
    y0: int,
    albedo: np.ndarray,
    light: Light,
    size: Size,
    kind: str,
    height: np.ndarray | None = None,
    specular: float = 0.1,
    shininess: float = 20.0,
    lift: float = 3.0,
) -> Sprite | None:
    """Clip a silhouette drawn in a local crop to the image and shade it from a dome height field."""
    w_img, h_img = size
    h, w = cover.shape
    cx0, cy0 = max(0, -x0), max(0, -y0)
    cx1, cy1 = min(w, w_img - x0), min(h, h_img - y0)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    if height is None:
        height = _dome(cover, 0.12)
    rgb = shade_height(height, albedo, light, specular, shininess)
    alpha = cv2.GaussianBlur(cover.astype(np.float32), (3, 3), 0.6)
    alpha = np.where(cover, np.maximum(alpha, 0.5), np.minimum(alpha, 0.49))
    sl = (slice(cy0, cy1), slice(cx0, cx1))
    if not cover[sl].any():
        return None
    return Sprite(
        x0=x0 + cx0,
        y0=y0 + cy0,
        rgb=np.ascontiguousarray(rgb[sl]),
        alpha=np.ascontiguousarray(alpha[sl]),
        cover=np.ascontiguousarray(cover[sl]),
        okra=None,
        kind=kind,
        lift=lift,
    )


def _polar_shape(
    radius: np.ndarray, centre: Centre, angle: float, pad: int = 3
) -> tuple[np.ndarray, int, int]:
    """Fill a polygon given by ``radius`` over ``len(radius)`` equally spaced angles around ``centre``."""
    phi = np.linspace(0, 2 * np.pi, len(radius), endpoint=False) + angle
    pts = np.stack([centre[0] + radius * np.cos(phi), centre[1] + radius * np.sin(phi)], axis=1)
    x0, y0 = int(np.floor(pts[:, 0].min())) - pad, int(np.floor(pts[:, 1].min())) - pad
    x1, y1 = int(np.ceil(pts[:, 0].max())) + pad, int(np.ceil(pts[:, 1].max())) + pad
    cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(cover, [np.round((pts - [x0, y0]) * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
    return cover.astype(bool), x0, y0


def leaf(
    rng: np.random.Generator,
    centre: Centre,
    angle: float,
    scale: float,
    light: Light,
    size: Size,
    palmate: bool | None = None,
) -> Sprite | None:
    """An ovate or a palmate (okra-plant) leaf; ``palmate=None`` picks either at random."""
    R = scale * rng.uniform(0.35, 0.8)
    phi = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    coin = rng.random() < 0.5
    palmate = coin if palmate is None else palmate
    if palmate:  # okra / maple-like lobed leaf
        lobes = int(rng.choice([3, 5]))
        depth = rng.uniform(0.25, 0.55)
        r = R * (1 - depth * (0.5 - 0.5 * np.cos(lobes * (phi - np.pi) + np.pi)) ** 0.8)
        r *= 1 - 0.5 * np.exp(-((phi - np.pi) ** 2) / 0.15)  # notch at the petiole
    else:  # ovate, pointed
        e = rng.uniform(0.3, 0.55)
        r = R * e / np.sqrt((e * np.cos(phi)) ** 2 + np.sin(phi) ** 2)
        r *= 1 + 0.25 * np.exp(-(np.minimum(phi, 2 * np.pi - phi) ** 2) / 0.05)
    r *= 1 + rng.normal(0, 0.01, len(r))
    cover, x0, y0 = _polar_shape(r, centre, angle)
    h, w = cover.shape
    cx, cy = centre[0] - x0, centre[1] - y0
    veins = np.zeros((h, w), np.float32)
    n_veins = 5 if palmate else 1
    for k in range(n_veins):
        a = angle + (k - n_veins // 2) * (2 * np.pi / 7 if palmate else 0)
        cv2.line(
            veins,
            (int(cx), int(cy)),
            (int(cx + R * np.cos(a)), int(cy + R * np.sin(a))),
            1.0,
            max(1, int(R / 40)),
        )
        if not palmate:
            for j in range(1, 6):
                p = (cx + R * j / 6 * np.cos(a), cy + R * j / 6 * np.sin(a))
                for side in (-1, 1):
                    b = a + side * 0.9
                    cv2.line(
                        veins,
                        (int(p[0]), int(p[1])),
                        (int(p[0] + R * 0.4 * np.cos(b)), int(p[1] + R * 0.4 * np.sin(b))),
                        0.6,
                        1,
                    )
    hue = rng.uniform(75, 125)
    base = hsv(hue, rng.uniform(0.45, 0.85), rng.uniform(0.25, 0.65))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tilt = ((xx - cx) * rng.normal(0, 1) + (yy - cy) * rng.normal(0, 1)) / max(R, 1)
    albedo = base * (1 + 0.12 * tilt[..., None]) * (1 + 0.25 * veins[..., None])
    dist = cv2.distanceTransform(cover.astype(np.uint8), cv2.DIST_L2, 3)
    height = cv2.GaussianBlur(np.sqrt(dist) * 1.5, (0, 0), max(1.0, R * 0.06)) - veins * 1.2
    height = height + rng.normal(0, 1) * tilt * 4
    return _blob_sprite(
        cover,
        x0,
        y0,
        albedo.astype(np.float32),
        light,
        size,
        "leaf",
        height,
        rng.uniform(0.05, 0.35),
        25,
        2.0,
    )


def flower(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    R = scale * rng.uniform(0.25, 0.45)
    phi = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    petals = 5
    r = R * (0.55 + 0.45 * np.abs(np.cos(petals * phi / 2)) ** 0.5) * (1 + rng.normal(0, 0.01, len(phi)))
    cover, x0, y0 = _polar_shape(r, centre, angle)
    h, w = cover.shape
    cx, cy = centre[0] - x0, centre[1] - y0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rr = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / R
    kind_col = rng.random()
    petal = (
        hsv(rng.uniform(48, 60), rng.uniform(0.35, 0.75), 0.95)
        if kind_col < 0.7
        else hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.7), 0.9)
    )
    eye = hsv(rng.uniform(330, 360), 0.7, 0.35)
    t = np.clip((rr - 0.18) / 0.12, 0, 1)[..., None]
    albedo = eye * (1 - t) + petal * t
    ang = np.arctan2(yy - cy, xx - cx) - angle
    height = 6 * rr + 2 * np.cos(petals * ang) * rr
    return _blob_sprite(
        cover, x0, y0, albedo.astype(np.float32), light, size, "flower", height, 0.05, 10, 2.0
    )


def bell_pepper(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    R = scale * rng.uniform(0.3, 0.5)
    phi = np.linspace(0, 2 * np.pi, 160, endpoint=False)
    lobes = int(rng.integers(3, 5))
    r = R * (1 + rng.uniform(0.04, 0.1) * np.cos(lobes * phi)) * (1 + 0.15 * np.sin(phi))
    cover, x0, y0 = _polar_shape(r, centre, angle)
    c = rng.random()
    base = (
        hsv(rng.uniform(90, 120), 0.8, rng.uniform(0.3, 0.6))
        if c < 0.55
        else hsv(rng.choice([0.0, 30.0, 50.0]), 0.9, 0.8)
    )
    return _blob_sprite(
        cover,
        x0,
        y0,
        base,
        light,
        size,
        "bell_pepper",
        _dome(cover, 0.1),
        rng.uniform(0.5, 0.9),
        rng.uniform(40, 100),
        R * 0.5,
    )


def hand(
    rng: np.random.Generator, centre: Centre, angle: float, scale: float, light: Light, size: Size
) -> Sprite | None:
    S = scale * rng.uniform(0.4, 0.7)
    pad = int(S * 1.6)
    h = w = 2 * pad
    cover = np.zeros((h, w), np.uint8)
    c = np.array([pad, pad], np.float64)
    d = unit(angle)
    p = np.array([-d[1], d[0]])
    palm = c - d * S * 0.2
    cv2.ellipse(
        cover,
        (int(palm[0]), int(palm[1])),
        (int(S * 0.45), int(S * 0.38)),
        float(np.degrees(angle)),
        0,
        360,
        1,
        -1,
    )
    for off, ln in [(-0.27, 0.72), (-0.09, 0.85), (0.09, 0.8), (0.26, 0.6)]:
        bend = rng.uniform(0.55, 1.0)
        a = palm + p * off * S + d * S * 0.3
        b = a + d * ln * S * bend + p * off * 0.25 * S
        thick = max(2, int(S * rng.uniform(0.13, 0.16)))
        cv2.line(cover, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, thick)
        cv2.circle(cover, (int(b[0]), int(b[1])), thick // 2, 1, -1)
    thumb_a = palm - p * S * 0.35
    thumb_b = thumb_a - p * S * 0.3 + d * S * 0.35
    cv2.line(
        cover,
        (int(thumb_a[0]), int(thumb_a[1])),
        (int(thumb_b[0]), int(thumb_b[1])),
        1,
        max(2, int(S * 0.17)),
    )
    cv2.circle(cover, (int(thumb_b[0]), int(thumb_b[1])), max(1, int(S * 0.085)), 1, -1)
    # The wrist runs off towards the back of the hand.
    wrist = palm - d * S * 1.4
    cv2.line(cover, (int(palm[0]), int(palm[1])), (int(wrist[0]), int(wrist[1])), 1, int(S * 0.6))
    skin = hsv(rng.uniform(12, 30), rng.uniform(0.2, 0.55), rng.uniform(0.3, 0.95))
    return _blob_sprite(
        cover.astype(bool),
        int(centre[0] - pad),
        int(centre[1] - pad),
        skin,
        light,
        size,
        "hand",
        None,
        0.15,
        15,
        S * 0.2,
    )


#: Distractors by name, with a weight for random choice.
DISTRACTORS: dict[str, tuple[Callable[..., Sprite | None], float]] = {
    "bean": (bean, 2.0),
    "pea_pod": (pea_pod, 1.0),
    "chilli": (chilli, 2.0),
    "cucumber": (cucumber, 1.5),
    "gourd": (gourd, 1.0),
    "leek": (leek, 1.0),
    "asparagus": (asparagus, 1.0),
    "bell_pepper": (bell_pepper, 1.0),
    "leaf": (leaf, 1.5),
    "vine": (vine, 1.0),
    "flower": (flower, 0.5),
}


def random_distractor(
    rng: np.random.Generator,
    centre: Centre,
    angle: float,
    scale: float,
    light: Light,
    size: Size,
    names: tuple[str, ...] | None = None,
) -> Sprite | None:
    """A distractor chosen by weight among ``names`` (default: all of :data:`DISTRACTORS`)."""
    keys = list(names or DISTRACTORS)
    weights = np.array([DISTRACTORS[k][1] for k in keys])
    name = keys[int(rng.choice(len(keys), p=weights / weights.sum()))]
    return DISTRACTORS[name][0](rng, centre, angle, scale, light, size)
