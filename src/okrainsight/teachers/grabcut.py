"""GrabCut as a teacher: no weights, so labelling runs on a fresh machine.

Seeding from the prompts (all in a downscaled working copy, the result upsampled):

* sure foreground: a thin line through the positive points (ordered along their main
  direction), so the pod's axis between the clicks is okra;
* probable foreground: a wider band along that axis, extended past the outer points,
  and the region of background-contrasting colour connected to it (calyx cap, tip);
* sure background: the negative points (small discs) and everything outside the box;
* the box: the one given, else the points' bounding box grown in proportion to their
  spread (a pod reaches beyond the two clicks on it).

After the cut: keep the regions holding a positive point, drop shadow-like pixels (darker
than the surrounding background but of its hue), and re-place the edge where the colour is
halfway between pod and background (blurred edges are mixtures); the probability is that
soft edge, smoothed.

Good enough on plain backgrounds (the original's white-table photos); weaker in clutter,
where SAM is the teacher to use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from okrainsight.teachers.base import (
    Teacher,
    TeacherResult,
    check_image,
    check_prompts,
    mask_iou,
    register_teacher,
)


def _order_along_axis(pts: np.ndarray) -> np.ndarray:
    """Sort points by their projection on their principal direction."""
    if len(pts) < 3:
        return pts
    centred = pts - pts.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return pts[np.argsort(centred @ vt[0])]


def _keep_prompted_components(mask: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Keep the connected components that contain a positive point (else the largest one)."""
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    keep = {int(lab[int(round(y)), int(round(x))]) for x, y in pos} - {0}
    if not keep:
        areas = np.bincount(lab.ravel(), minlength=n)
        areas[0] = 0
        keep = {int(areas.argmax())}
    return np.isin(lab, sorted(keep))


#: Recorded in every label's provenance: 2 since one click's box grows over the clicked region.
GRABCUT_VERSION = 2

#: The box grows over the clicked, background-contrasting region only while that region covers
#: less than this share of the photo (a larger one means the backdrop is not plain).
MAX_REACH = 0.4


def _salient_region(
    lab: np.ndarray, box: tuple[int, int, int, int], axis_band: np.ndarray, min_distance: float = 14.0
) -> np.ndarray:
    """Pixels inside ``box`` whose colour stands out from the background and that connect to the
    prompted axis: on a plain background this reaches the parts of a pod the clicks do not
    (calyx cap, stalk, tip). The background colour is the median of the box's outline; the
    distance is in Lab with lightness down-weighted, so grey shadows do not stand out."""
    x0, y0, x1, y1 = box
    roi = lab[y0 : y1 + 1, x0 : x1 + 1]
    if roi.shape[0] < 3 or roi.shape[1] < 3:
        return np.zeros(lab.shape[:2], bool)
    ring = np.concatenate([roi[0], roi[-1], roi[:, 0], roi[:, -1]])
    bg = np.median(ring, axis=0)
    diff = roi - bg
    dist = np.sqrt((0.08 * diff[..., 0]) ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)
    stand_out = np.zeros(lab.shape[:2], np.uint8)
    stand_out[y0 : y1 + 1, x0 : x1 + 1] = dist > min_distance
    n, lab_cc = cv2.connectedComponents(stand_out, connectivity=8)
    touching = set(np.unique(lab_cc[axis_band & (stand_out > 0)]).tolist()) - {0}
    return np.isin(lab_cc, sorted(touching)) if touching else np.zeros(lab.shape[:2], bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region not connected to the image border filled."""
    m = np.pad(mask.astype(np.uint8), 1)
    flood = m.copy()
    cv2.floodFill(flood, np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8), (0, 0), 1)
    return (m | (1 - flood)).astype(bool)[1:-1, 1:-1]


def _drop_shadow(lab: np.ndarray, mask: np.ndarray, max_chroma: float) -> np.ndarray:
    """Remove from ``mask`` the pixels that look like the background in shadow (``lab``: the
    photo as float32 Lab): darker than
    the background around the mask but of nearly its hue and saturation (Lab a, b within
    ``max_chroma``). Holes this opens inside the object are filled again."""
    m = mask.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    ring = (cv2.dilate(m, k, iterations=2) - cv2.dilate(m, k)).astype(bool)
    if not ring.any():
        return mask
    bg = np.median(lab[ring], axis=0)
    chroma = np.hypot(lab[..., 1] - bg[1], lab[..., 2] - bg[2])
    shadow = mask & (chroma < max_chroma) & (lab[..., 0] < bg[0])
    if shadow.sum() > 0.5 * mask.sum():  # a grey object on grey: not a shadow problem
        return mask
    return _fill_holes(mask & ~shadow)


def _open_thin_parts(mask: np.ndarray, frac: float) -> np.ndarray:
    """Remove parts much thinner than the object (a pod's stalk, a one-pixel rim): a
    morphological opening with a disc of radius ``frac`` times the object's half-width."""
    m = mask.astype(np.uint8)
    half = float(cv2.distanceTransform(m, cv2.DIST_L2, 5).max())
    r = int(round(frac * half))
    if r < 1:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.morphologyEx(m, cv2.MORPH_OPEN, k).astype(bool)


def _edge_alpha(lab: np.ndarray, mask: np.ndarray, band: int, lightness: float = 1.0) -> np.ndarray:
    """A soft version of ``mask`` whose edge sits where the colour (``lab``: the photo as
    float32 Lab) is halfway between the pod's and the background's (a blurred photo's edge
    pixels are mixtures of both).

    Within ``band`` pixels of the cut, each pixel's colour is projected on the line from
    the local background colour to the local foreground colour; the position (0..1) is its
    alpha. Inside the band's inner side alpha is 1, outside 0. Returns float32 ``(h, w)``.
    """
    m = mask.astype(np.uint8)
    if not m.any() or m.all():
        return m.astype(np.float32)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    inner = cv2.erode(m, k)
    outer = 1 - cv2.dilate(m, k)
    img = lab.copy()
    img[..., 0] *= lightness  # shadows differ from the background mostly in lightness
    sigma = 3.0 * band

    def local_mean(region: np.ndarray) -> np.ndarray:
        w = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma)
        s = cv2.GaussianBlur(img * region[..., None], (0, 0), sigma)
        return s / np.maximum(w, 1e-6)[..., None], w

    # colours just inside and just outside the band: the pod's rim (often darker than its
    # middle) and the background next to it (shadow included)
    k2 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * band + 1, 4 * band + 1))
    inner_ring = inner - cv2.erode(m, k2)
    outer_ring = cv2.dilate(m, k2) - (1 - outer)
    fg, wf = local_mean(inner_ring if inner_ring.any() else m)
    bg, wb = local_mean(outer_ring)
    d = fg - bg
    denom = (d * d).sum(axis=2)
    alpha = ((img - bg) * d).sum(axis=2) / np.maximum(denom, 1e-6)
    alpha = np.clip(alpha, 0.0, 1.0)
    in_band = (inner == 0) & (outer == 0) & (denom > 100.0) & (wf > 1e-3) & (wb > 1e-3)
    out = m.astype(np.float32)
    out[in_band] = alpha[in_band]
    return out


class GrabCutTeacher(Teacher):
    """OpenCV GrabCut seeded from points (and an optional box).

    Args:
        work_size: the longer side of the working copy in pixels (speed vs. detail).
        iterations: GrabCut iterations.
        expand: how far the automatic box reaches past the points, as a fraction of the
            points' spread (and at least ``min_margin`` of the image's longer side).
        band: half-width of the probable-foreground band, as a fraction of the working
            copy's longer side.
        smooth: Gaussian sigma (working-copy pixels) that turns the hard cut into a probability.
        colour_seed: also mark as probable foreground the region of background-contrasting
            colour connected to the clicked axis (reaches calyx caps and tips on plain backgrounds);
            with a single positive click and no box, also grow the box over that region (up to
            :data:`MAX_REACH` of the photo), so that one click labels a whole lone pod.
        edge_band: width (working-copy pixels) of the band around the cut where the edge is
            re-placed at the colour midpoint between pod and background (0 = off).
        open_frac: drop parts thinner than this share of the object's width (stalks); 0 = off.
    """

    name = "grabcut"

    def __init__(
        self,
        *,
        work_size: int = 320,
        iterations: int = 5,
        expand: float = 1.0,
        min_margin: float = 0.08,
        band: float = 0.05,
        smooth: float = 1.2,
        colour_seed: bool = True,
        edge_band: int = 2,
        edge_lightness: float = 0.3,
        shadow_chroma: float = 8.0,
        open_frac: float = 0.0,
    ) -> None:
        self.work_size = int(work_size)
        self.iterations = int(iterations)
        self.expand = float(expand)
        self.min_margin = float(min_margin)
        self.band = float(band)
        self.smooth = float(smooth)
        self.colour_seed = bool(colour_seed)
        self.edge_band = int(edge_band)
        self.edge_lightness = float(edge_lightness)
        self.shadow_chroma = float(shadow_chroma)
        self.open_frac = float(open_frac)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": GRABCUT_VERSION,
            "checkpoint_sha256": None,
            "work_size": self.work_size,
            "iterations": self.iterations,
        }

    def predict(
        self,
        image: np.ndarray,
        points: Sequence[Sequence[float]] | np.ndarray | None,
        point_labels: Sequence[int] | np.ndarray | None,
        box: Sequence[float] | np.ndarray | None = None,
    ) -> TeacherResult:
        img = check_image(image)
        pts, labels, bx = check_prompts(img, points, point_labels, box)
        h, w = img.shape[:2]
        scale = min(1.0, self.work_size / max(h, w))
        sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
        fx, fy = sw / w, sh / h
        small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else img
        spts = pts * np.array([fx, fy], np.float32)
        pos = spts[labels == 1]
        neg = spts[labels == 0]
        # float Lab of the working copy, shared by the colour seed, the shadow and the edge steps
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)

        if bx is not None:
            x0, y0, x1, y1 = bx * np.array([fx, fy, fx, fy], np.float32)
        else:
            spread = float(np.linalg.norm(np.ptp(pos, axis=0))) if len(pos) > 1 else 0.0
            margin = max(self.expand * spread, self.min_margin * max(sw, sh))
            x0, y0 = pos.min(axis=0) - margin
            x1, y1 = pos.max(axis=0) + margin
            if self.colour_seed and len(pos) == 1:
                # One click on the middle of a long pod: everything outside the box is fixed as
                # background, the pod's own far parts included, and GrabCut then learns the pod's
                # colour as background. Grow the box over the background-contrasting region the
                # click touches (on a plain backdrop: the whole pod), when that region is small.
                # Pods that touch form one region: two clicks (the pod's ends) keep the box tight.
                near = np.zeros((sh, sw), np.uint8)
                px, py = np.round(pos[0]).astype(int)
                cv2.circle(near, (int(px), int(py)), max(2, round(self.band * max(sw, sh))), 1, -1)
                reach = _salient_region(lab, (0, 0, sw - 1, sh - 1), near > 0)
                if reach.any() and reach.mean() < MAX_REACH:
                    ys, xs = np.nonzero(reach)
                    pad = self.min_margin * max(sw, sh)
                    x0, y0 = min(x0, xs.min() - pad), min(y0, ys.min() - pad)
                    x1, y1 = max(x1, xs.max() + pad), max(y1, ys.max() + pad)
        x0, y0 = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
        x1, y1 = int(min(sw - 1, np.ceil(x1))), int(min(sh - 1, np.ceil(y1)))

        seeds = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        seeds[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_BGD
        band = max(2, round(self.band * max(sw, sh)))
        if len(pos):
            axis = _order_along_axis(pos)
            if len(axis) >= 2:
                # extend the axis past both ends by a share of the outer segments
                ext0 = axis[0] + 0.35 * (axis[0] - axis[1])
                ext1 = axis[-1] + 0.35 * (axis[-1] - axis[-2])
                line = np.vstack([ext0, axis, ext1])
            else:
                line = axis
            ipoly = np.round(line).astype(np.int32).reshape(-1, 1, 2)
            pr_fg = np.zeros_like(seeds)
            cv2.polylines(pr_fg, [ipoly], False, 1, thickness=2 * band + 1)
            for x, y in np.round(line).astype(int):
                cv2.circle(pr_fg, (int(x), int(y)), band, 1, -1)
            seeds[(pr_fg > 0) & (seeds == cv2.GC_PR_BGD)] = cv2.GC_PR_FGD
            fg = np.zeros_like(seeds)
            core = np.round(axis).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(fg, [core], False, 1, thickness=max(1, band // 3))
            for x, y in np.round(axis).astype(int):
                cv2.circle(fg, (int(x), int(y)), max(1, band // 3), 1, -1)
            seeds[fg > 0] = cv2.GC_FGD
            if self.colour_seed:
                salient = _salient_region(lab, (x0, y0, x1, y1), pr_fg > 0)
                seeds[salient & (seeds == cv2.GC_PR_BGD)] = cv2.GC_PR_FGD
        else:  # a box alone: GrabCut's classic rectangle mode
            seeds[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_FGD
        for x, y in np.round(neg).astype(int):
            cv2.circle(seeds, (int(x), int(y)), max(1, band // 2), int(cv2.GC_BGD), -1)
        if not ((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any():  # box = whole image
            for edge in (seeds[:2], seeds[-2:], seeds[:, :2], seeds[:, -2:]):
                edge[edge == cv2.GC_PR_FGD] = cv2.GC_PR_BGD

        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        has_fg = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).any()
        has_bg = ((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any()
        if has_fg and has_bg:
            cv2.grabCut(small, seeds, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        raw = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        clean = _keep_prompted_components(raw, pos) if len(pos) else raw
        if self.shadow_chroma > 0 and clean.any():
            clean = _drop_shadow(lab, clean, self.shadow_chroma)
            clean = _keep_prompted_components(clean, pos) if len(pos) else clean
        if self.open_frac > 0 and clean.any():
            clean = _open_thin_parts(clean, self.open_frac)
            clean = _keep_prompted_components(clean, pos) if len(pos) else clean

        def upsample(m: np.ndarray) -> np.ndarray:
            soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), self.smooth)
            return cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else soft

        soft_clean = (
            _edge_alpha(lab, clean, self.edge_band, self.edge_lightness) if self.edge_band > 0 else clean
        )
        prob = np.clip(upsample(soft_clean), 0.0, 1.0).astype(np.float32)
        raw_prob = upsample(raw)
        mask = prob >= 0.5
        raw_mask = raw_prob >= 0.5

        def agreement(m: np.ndarray) -> float:
            if not len(pts):
                return 1.0
            xi = np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)
            yi = np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1)
            return float((m[yi, xi] == (labels == 1)).mean())

        scores = [agreement(mask), agreement(raw_mask) * mask_iou(mask, raw_mask)]
        # stability: how much the mask moves when the 0.5 cut moves by 0.15 either way
        inner = float((prob > 0.65).sum())
        outer = float((prob > 0.35).sum())
        stability = inner / outer if outer else 0.0
        return TeacherResult(
            mask=mask,
            probability=prob,
            score=scores[0],
            candidates=[mask, raw_mask],
            candidate_scores=scores,
            chosen=0,
            stability=stability,
        )


@register_teacher("grabcut")
def build_grabcut_teacher(**kwargs: Any) -> GrabCutTeacher:
    """``grabcut``: OpenCV GrabCut from the prompts; no weights. Ignores checkpoint/model options."""
    for key in ("checkpoint", "model_type", "device"):
        kwargs.pop(key, None)
    return GrabCutTeacher(**kwargs)
