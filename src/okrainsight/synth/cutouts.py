"""Real pods cut out of labelled photographs and pasted into rendered scenes (``okra synth --pods``).

Rendered pods differ from real ones in ways no renderer version has closed (see
``docs/synth.md``); a few labelled real photographs give real pod pixels. :func:`load_cutouts`
reads a folder in the data set layout (``images/<stem>.*`` with ``masks/<stem>.png``, e.g.
what ``okra label`` writes) and keeps each photo's okra pixels, cropped to their bounding box,
as one cut-out (a bunch stays a bunch). :func:`render_cutout_scene` lays one or two of them,
scaled, turned, mirrored and re-lit, on a rendered surface or among rendered look-alikes, with
a soft contact shadow. The mask is exactly the pasted pixels (alpha >= 0.5) in front of
everything else, so look-alikes under a cut-out drop out of nothing and those beside it stay
out of the mask.

Coordinates: images are ``(H, W, 3)`` RGB, masks ``(H, W)``; ``size`` is ``(width, height)``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np

from okrainsight.dataset import DatasetLayout
from okrainsight.errors import ConfigError, ImageReadError
from okrainsight.imageio import iter_image_files, read_image, read_mask
from okrainsight.synth.camera import apply_camera
from okrainsight.synth.scenes import Scene, render_scene
from okrainsight.synth.shading import Light, random_light

log = logging.getLogger(__name__)

#: Longest side a cut-out is reduced to when loaded.
CUTOUT_MAX_SIDE = 768
#: Scene kinds a cut-out scene borrows its backdrop (and look-alikes) from.
BACKDROP_KINDS = ("negative", "cloth", "wood", "paper", "board", "plate", "plant", "white")


@dataclass
class Cutout:
    """The okra pixels of one labelled photograph.

    Attributes:
        rgb: ``(h, w, 3)`` float32 RGB in 0..1, cropped to the mask's bounding box.
        alpha: ``(h, w)`` float32 coverage in 0..1 (the mask, eroded by one pixel so that the
            photo's own backdrop does not fringe the pasted edge).
        source: the photograph's stem.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    source: str


def load_cutouts(folder: str | os.PathLike[str], max_side: int | None = CUTOUT_MAX_SIDE) -> list[Cutout]:
    """One :class:`Cutout` per image of ``folder/images`` that has a non-empty ``masks/<stem>.png``,
    reduced to ``max_side`` px at most (None keeps the photo's resolution).

    An image that cannot be read, or whose mask is missing, unreadable, empty or of another
    size, is skipped with one warning line naming the file. Raises :class:`ConfigError` when the
    folder has no ``images/`` or yields no cut-out at all.
    """
    layout = DatasetLayout(folder)
    if not layout.images_dir.is_dir():
        raise ConfigError(f"{layout.root}: pods folder needs images/ and masks/ (the data set layout)")
    out: list[Cutout] = []
    for path in iter_image_files([layout.images_dir]):
        mask_path = layout.mask_path(path.stem)
        try:
            image = read_image(path)
            if not mask_path.is_file():
                raise ImageReadError(path, "no mask for this image")
            mask = read_mask(mask_path) > 0
        except ImageReadError as exc:
            log.warning("skipped pods file %s", exc)
            continue
        if mask.shape != image.shape[:2]:
            log.warning(
                "skipped pods file %s: mask is %dx%d, image %dx%d",
                mask_path,
                *mask.shape[::-1],
                *image.shape[1::-1],
            )
            continue
        if not mask.any():
            log.warning("skipped pods file %s: the mask is empty", mask_path)
            continue
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        rgb = image[y0:y1, x0:x1].astype(np.float32) / 255
        alpha = cv2.erode(mask[y0:y1, x0:x1].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
        scale = max_side / max(rgb.shape[:2]) if max_side else 1.0
        if scale < 1:
            dsize = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, dsize, interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(alpha, dsize, interpolation=cv2.INTER_AREA)
        if alpha.max() < 0.5:  # a mask of only a few pixels, gone after the erosion
            log.warning("skipped pods file %s: the mask is too thin to cut out", mask_path)
            continue
        out.append(Cutout(rgb=rgb, alpha=alpha, source=path.stem))
    if not out:
        raise ConfigError(f"{layout.root}: no image with a usable okra mask in the pods folder")
    return out


def _paste(
    canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, light: Light
) -> tuple[np.ndarray, np.ndarray]:
    """Lay ``rgb`` (``(h, w, 3)`` float 0..1, coverage ``alpha``) on ``canvas`` (``(H, W, 3)`` float):
    25-100% of the frame, any angle, mirrored half the time, re-lit, with a soft shadow.
    Returns the new canvas and the ``(H, W)`` bool pixels it now covers (alpha >= 0.5)."""
    h, w = canvas.shape[:2]
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    ch, cw = alpha.shape
    scale = rng.uniform(0.25, 1.0) * min(w / cw, h / ch)
    turn = cv2.getRotationMatrix2D((cw / 2, ch / 2), float(rng.uniform(-180, 180)), float(scale))
    turn[:, 2] += [rng.uniform(0.2, 0.8) * w - cw / 2, rng.uniform(0.2, 0.8) * h - ch / 2]
    obj = cv2.warpAffine(np.ascontiguousarray(rgb), turn, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(np.ascontiguousarray(alpha), turn, (w, h), flags=cv2.INTER_LINEAR)
    obj = np.clip(obj * rng.uniform(0.6, 1.15) * (1 + rng.normal(0, 0.04, 3)) * light.colour, 0, 1)
    offset = light.direction[:2] / max(float(light.direction[2]), 0.3) * rng.uniform(2, 8)
    shift = np.float32([[1, 0, -offset[0]], [0, 1, offset[1]]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(cover, shift, (w, h)), (0, 0), float(rng.uniform(3, 7)))
    soft = cv2.GaussianBlur(cover, (0, 0), 0.7)[..., None]
    canvas = canvas * (1 - rng.uniform(0.2, 0.5) * shadow)[..., None]
    return canvas * (1 - soft) + obj * soft, cover >= 0.5


def _decoy_patch(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An elongated, soft-edged oval cut from near the middle of a real photograph without okra
    (``(H, W, 3)`` uint8), as ``(rgb float 0..1, alpha)``: real texture that is not okra."""
    H, W = photo.shape[:2]
    side = max(8, int(rng.uniform(0.3, 0.8) * min(H, W)))
    cx = int(np.clip(W / 2 + rng.uniform(-0.25, 0.25) * W, side // 2, W - side // 2))
    cy = int(np.clip(H / 2 + rng.uniform(-0.25, 0.25) * H, side // 2, H - side // 2))
    crop = photo[cy - side // 2 : cy - side // 2 + side, cx - side // 2 : cx - side // 2 + side]
    alpha = np.zeros(crop.shape[:2], np.float32)
    aspect = rng.uniform(1.5, 5.0)
    cv2.ellipse(
        alpha, (side // 2, side // 2), (side // 2 - 1, max(2, int(side / 2 / aspect))), 0, 0, 360, 1.0, -1
    )
    return crop.astype(np.float32) / 255, cv2.GaussianBlur(alpha, (0, 0), 1.0)


def render_cutout_scene(
    seed: int,
    size: tuple[int, int],
    cutouts: list[Cutout],
    *,
    background: np.ndarray | None = None,
    decoys: list[np.ndarray] | None = None,
) -> Scene:
    """A rendered backdrop with one or two real cut-outs pasted on top, deterministically from ``seed``.

    The backdrop is :func:`~okrainsight.synth.scenes.render_scene` of a kind from
    :data:`BACKDROP_KINDS` (often with look-alikes; its own rendered pods stay okra where the
    cut-outs leave them visible), or of ``background`` (a real photograph) when given. Each
    cut-out spans 25-100% of the frame, is turned by any angle, mirrored half the time, and
    re-lit (brightness 0.6-1.15, a slight colour cast); a soft shadow falls beside it.
    ``decoys`` (real photographs without okra, ``(H, W, 3)`` uint8) add one to three elongated
    ovals of real texture pasted the same way and never okra, so that "pasted real pixels" is
    not a sign of okra: without them, models trained on cut-out scenes called more real
    vegetables okra (``docs/synth.md``).

    Returns:
        A :class:`Scene` of kind ``"cutout"``: ``mask`` 255 on okra pixels (pasted and rendered),
        ``instances`` with the pasted cut-outs numbered after the rendered pods, and one
        ``pods`` entry per visible cut-out: ``id``, ``bbox`` ``[x0, y0, x1, y1]``,
        ``area_px`` and ``cutout`` (the source photograph's stem).
    """
    if not cutouts:
        raise ValueError("render_cutout_scene needs at least one cut-out")
    w, h = int(size[0]), int(size[1])
    rng = np.random.default_rng([int(seed), 7])
    backdrop_seed = int(rng.integers(0, 2**31 - 1))
    if background is not None:
        base = render_scene(backdrop_seed, size, "negative", background=background)
    else:
        kind = BACKDROP_KINDS[int(rng.integers(len(BACKDROP_KINDS)))]
        base = render_scene(backdrop_seed, size, kind)
    canvas = base.image.astype(np.float32) / 255
    instances = base.instances.astype(np.int32)
    pods = [dict(p) for p in base.pods]
    light = random_light(rng)
    decoy_px = np.zeros((h, w), bool)
    items: list[Cutout | np.ndarray] = [
        cutouts[int(rng.integers(len(cutouts)))] for _ in range(int(rng.integers(1, 3)))
    ]
    if decoys:
        items += [decoys[int(rng.integers(len(decoys)))] for _ in range(int(rng.integers(1, 4)))]
    for k in rng.permutation(len(items)):
        item = items[int(k)]
        rgb, alpha = (item.rgb, item.alpha) if isinstance(item, Cutout) else _decoy_patch(item, rng)
        canvas, hard = _paste(canvas, rgb, alpha, rng, light)
        if not hard.any():
            continue
        if not isinstance(item, Cutout):  # a real look-alike patch: never okra, hides what is under it
            instances[hard] = 0
            decoy_px |= hard
            continue
        decoy_px &= ~hard
        raw = -1 - len(pods)  # provisional id of this cut-out: negative, unlike the rendered pods'
        instances[hard] = raw
        pods.append({"cutout": item.source, "_raw": raw})
    image = apply_camera(canvas.astype(np.float32), rng, strength=0.5)  # the backdrop had one already
    # Renumber: rendered pods where still visible, then the cut-outs, 1, 2, ...
    out_inst = np.zeros((h, w), np.uint16)
    kept: list[dict] = []
    for p in pods:
        pix = instances == p.pop("_raw", p.get("id"))
        if not pix.any():
            continue
        new_id = len(kept) + 1
        out_inst[pix] = new_id
        ys, xs = np.nonzero(pix)
        if "axis_points" in p:  # keep the rendered pod's axis where it is still visible
            p["axis_points"] = [pt for pt in p["axis_points"] if out_inst[int(pt[1]), int(pt[0])] == new_id]
        p.update(
            id=new_id,
            bbox=[int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
            area_px=int(pix.sum()),
        )
        kept.append(p)
    mask = np.where(out_inst > 0, 255, 0).astype(np.uint8)
    return Scene(
        image=image,
        mask=mask,
        instances=out_inst,
        pods=kept,
        kind="cutout",
        distractor_mask=(base.distractor_mask | decoy_px) & (out_inst == 0),
        seed=int(seed),
    )
