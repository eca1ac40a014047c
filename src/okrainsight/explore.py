"""``okra explore``: a static HTML page to look through a dataset, its masks and its defects.

The page works from ``file://`` with no server and no network: one HTML file with
inline CSS and a few lines of inline JavaScript (a filter box), plus a folder of small
JPEG thumbnails beside it (``report.html`` -> ``report_files/``). Thumbnails are at most
``thumb_size`` pixels on their longer side and load lazily, so a page of 1,000 images
opens at once.

For each image the page shows the photo, the mask overlaid on it (okra tinted magenta
with its outline, prompt points drawn: green positive, red negative) and the soft map
when there is one, with per-image statistics: size (after EXIF orientation), okra
fraction (share of mask pixels), number of pods (connected components of the mask,
8-connected, ignoring specks below 0.01 % of the image), the grade from
``labels.csv`` and the scalar fields of the image's latest ``manifest.jsonl`` record
(for rendered scenes, e.g. the scene kind and its pod count). The defects found by
:func:`okrainsight.dataset.check_dataset` are listed at the top and marked on their images.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from okrainsight.dataset import (
    DatasetLayout,
    Defect,
    check_dataset,
    latest_manifest_by_stem,
    load_labels,
    load_prompts,
)
from okrainsight.errors import ConfigError, DatasetError, ImageReadError
from okrainsight.imageio import atomic_write_bytes, atomic_write_text, read_image, read_mask

log = logging.getLogger(__name__)

#: Components smaller than this share of the image are not counted as pods.
MIN_POD_FRACTION = 1e-4
OVERLAY_RGB = (255, 0, 200)


@dataclass
class ImageEntry:
    """What the page shows for one image file. Paths of thumbnails are relative to the report."""

    stem: str
    image: Path
    size: tuple[int, int] | None = None  # (width, height) after orientation
    okra_fraction: float | None = None
    pods: int | None = None
    grade: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    defects: list[Defect] = field(default_factory=list)
    thumb: str | None = None
    overlay: str | None = None
    soft: str | None = None


@dataclass(frozen=True)
class ExploreReport:
    """Where :func:`build_explorer` wrote the page and what it holds."""

    html_path: Path
    files_dir: Path
    n_images: int
    n_defects: int


def count_pods(mask: np.ndarray) -> int:
    """Connected components (8-connected) of a ``(H, W)`` 0/255 mask, ignoring specks.

    A component counts when its area is at least :data:`MIN_POD_FRACTION` of the image
    (and at least 1 pixel).
    """
    binary = (np.asarray(mask) > 127).astype(np.uint8)
    if not binary.any():
        return 0
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_area = max(1, int(MIN_POD_FRACTION * binary.size))
    return int((stats[1:n, cv2.CC_STAT_AREA] >= min_area).sum())


def _fit(size: tuple[int, int], limit: int) -> tuple[int, int]:
    w, h = size
    scale = min(1.0, limit / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _jpeg(arr: np.ndarray, quality: int = 82) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _resize(arr: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return cv2.resize(arr, size, interpolation=interp)


def _overlay(thumb: np.ndarray, mask: np.ndarray, prompt: dict[str, Any] | None, scale: float) -> np.ndarray:
    """Tint the okra pixels of ``thumb`` (H, W, 3 uint8) and outline them; draw prompt points."""
    out = thumb.astype(np.float32)
    sel = mask > 127
    out[sel] = 0.55 * out[sel] + 0.45 * np.array(OVERLAY_RGB, np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(sel.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, OVERLAY_RGB, 1)
    if prompt:
        r = max(2, round(max(thumb.shape[:2]) / 64))
        for (x, y), lab in zip(prompt["points"], prompt["labels"], strict=False):
            colour = (0, 230, 0) if lab == 1 else (230, 0, 0)
            centre = (round(x * scale), round(y * scale))
            cv2.circle(out, centre, r, (255, 255, 255), -1)
            cv2.circle(out, centre, max(1, r - 1), colour, -1)
        if prompt.get("box") is not None:
            x0, y0, x1, y1 = (round(v * scale) for v in prompt["box"])
            cv2.rectangle(out, (x0, y0), (x1, y1), (255, 200, 0), 1)
    return out


def _scalar_attributes(record: dict[str, Any]) -> dict[str, str]:
    """Scalar fields of a manifest record as short strings.

    Long strings are cut, short lists shown as JSON, long lists as their length (``pods (count)``),
    large objects and ``prompts`` left out.
    """
    out: dict[str, str] = {}
    for key in sorted(record):
        if key in ("stem", "prompts"):
            continue
        value = record[key]
        if isinstance(value, bool | int | str) or value is None:
            text = str(value)
        elif isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, list | dict) and len(json.dumps(value, default=str)) <= 60:
            text = json.dumps(value, default=str)
        elif isinstance(value, list):  # e.g. the renderer's per-pod records: show how many
            out[f"{key} (count)"] = str(len(value))
            continue
        else:
            continue
        out[str(key)] = text if len(text) <= 80 else text[:77] + "..."
    return out


def _safe_load(loader: Any, path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return loader(path)
    except DatasetError as exc:  # already reported by check_dataset
        log.info("explore: ignoring %s", exc)
        return {}


def _entry(
    layout: DatasetLayout,
    image: Path,
    files_dir: Path,
    thumb_size: int,
    prompts: dict[str, dict[str, Any]],
) -> ImageEntry:
    entry = ImageEntry(stem=image.stem, image=image)
    key = hashlib.sha1(image.name.encode("utf-8")).hexdigest()[:16]
    rel = urllib.parse.quote(files_dir.name)
    try:
        rgb = read_image(image)
    except ImageReadError:
        return entry
    h, w = rgb.shape[:2]
    entry.size = (w, h)
    tsize = _fit((w, h), thumb_size)
    thumb = _resize(rgb, tsize)
    atomic_write_bytes(files_dir / f"t_{key}.jpg", _jpeg(thumb))
    entry.thumb = f"{rel}/t_{key}.jpg"
    mask_path = layout.mask_path(image.stem)
    if mask_path.exists():
        try:
            mask = read_mask(mask_path)
        except ImageReadError:
            mask = None
        if mask is not None:
            entry.okra_fraction = float((mask > 127).mean())
            entry.pods = count_pods(mask)
            small = _resize(mask, tsize, nearest=True)
            scale = tsize[0] / w
            atomic_write_bytes(
                files_dir / f"o_{key}.jpg", _jpeg(_overlay(thumb, small, prompts.get(image.stem), scale))
            )
            entry.overlay = f"{rel}/o_{key}.jpg"
    soft_path = layout.soft_path(image.stem)
    if soft_path.exists():
        try:
            soft = read_mask(soft_path, binarize=False)
        except ImageReadError:
            soft = None
        if soft is not None:
            atomic_write_bytes(files_dir / f"s_{key}.jpg", _jpeg(_resize(soft, tsize)))
            entry.soft = f"{rel}/s_{key}.jpg"
    return entry


def build_explorer(
    root: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    *,
    thumb_size: int = 256,
    progress: bool = True,
) -> ExploreReport:
    """Write a static explorer page for the dataset at ``root``.

    Args:
        root: dataset folder (with ``images/``).
        out_html: the page to write; thumbnails go to ``<out stem>_files/`` beside it.
        thumb_size: longer side of the thumbnails in pixels (16..1024).
        progress: show a progress bar on stderr.

    Returns:
        An :class:`ExploreReport`.

    Raises:
        DatasetError: ``root`` is not a dataset. ConfigError: bad ``thumb_size`` or output path.
    """
    if not 16 <= thumb_size <= 1024:
        raise ConfigError(f"thumbnail size {thumb_size} must be between 16 and 1024 pixels")
    layout = DatasetLayout(root).require()
    out = Path(out_html)
    if out.is_dir():
        raise ConfigError(f"{out}: --out must be an HTML file name, not a folder")
    files_dir = out.with_name(f"{out.stem}_files")
    files_dir.mkdir(parents=True, exist_ok=True)
    defects = check_dataset(layout.root, progress=progress)
    prompts = _safe_load(load_prompts, layout.prompts_path)
    labels = _safe_load(load_labels, layout.labels_path)
    manifest = latest_manifest_by_stem(layout.manifest_path)
    entries: list[ImageEntry] = []
    images = layout.image_paths()
    for image in tqdm(images, desc="explore", unit="image", disable=None if progress else True, leave=False):
        entry = _entry(layout, image, files_dir, thumb_size, prompts)
        entry.grade = labels.get(image.stem)
        entry.attributes = _scalar_attributes(manifest.get(image.stem, {}))
        entry.defects = [
            d
            for d in defects
            if d.path == image
            or (d.stem == image.stem and (d.path.parent != layout.images_dir or d.kind == "duplicate-stem"))
        ]
        entries.append(entry)
    written = {Path(p).name for e in entries for p in (e.thumb, e.overlay, e.soft) if p}
    for stale in files_dir.glob("[tos]_*.jpg"):
        if stale.name not in written:
            stale.unlink()
    page = render_html(layout.root, entries, defects, thumb_size)
    atomic_write_text(out, page)
    return ExploreReport(html_path=out, files_dir=files_dir, n_images=len(entries), n_defects=len(defects))


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f5;color:#1d1f1c}
header{padding:12px 20px;background:#24402a;color:#fff;position:sticky;top:0;z-index:2}
header h1{font-size:18px;margin:0 0 6px}
header input{font:inherit;padding:4px 8px;width:28em;max-width:60vw}
header label{margin-left:12px}
#defects{margin:12px 20px;padding:8px 12px;background:#fff2f0;border:1px solid #e0b4ae}
#defects li{margin:2px 0}
#grid{display:flex;flex-wrap:wrap;gap:12px;padding:12px 20px}
.card{background:#fff;border:1px solid #ccd3c8;border-radius:6px;padding:8px;width:max-content;max-width:100%}
.card.bad{border:2px solid #c0392b}
.card h2{font-size:14px;margin:0 0 6px;word-break:break-all;max-width:540px}
.pics{display:flex;gap:4px}
.pics figure{margin:0;text-align:center;font-size:11px;color:#667}
.pics img{display:block;max-width:256px;height:auto;background:#eee}
table{border-collapse:collapse;font-size:12px;margin-top:6px}
td{padding:1px 8px 1px 0;vertical-align:top}
td:first-child{color:#667}
.defect{color:#c0392b;font-size:12px;margin:4px 0 0;word-break:break-all;max-width:540px}
.none{color:#999;font-style:italic}
"""

_JS = """
(function(){
  var q=document.getElementById('q'), only=document.getElementById('only');
  var cards=document.querySelectorAll('.card'), count=document.getElementById('count');
  function apply(){
    var t=q.value.trim().toLowerCase(), n=0;
    for(var i=0;i<cards.length;i++){
      var c=cards[i], hit=!t||c.getAttribute('data-key').indexOf(t)>=0;
      var show=hit&&(!only.checked||c.classList.contains('bad'));
      c.style.display=show?'':'none'; if(show)n++;
    }
    count.textContent=n+' shown';
  }
  q.addEventListener('input',apply); only.addEventListener('change',apply);
  var h=decodeURIComponent(location.hash.slice(1)); if(h.indexOf('q=')===0){q.value=h.slice(2);}
  apply();
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _card_id(image: Path) -> str:
    return "img-" + hashlib.sha1(image.name.encode("utf-8")).hexdigest()[:16]


def _img(src: str | None, label: str, size: tuple[int, int] | None, thumb_size: int) -> str:
    if src is None:
        return ""
    dims = ""
    if size is not None:
        w, h = _fit(size, thumb_size)
        dims = f' width="{w}" height="{h}"'
    return (
        f'<figure><img src="{_e(src)}" alt="{_e(label)}" loading="lazy" decoding="async"{dims}>'
        f"<figcaption>{_e(label)}</figcaption></figure>"
    )


def render_html(root: Path, entries: list[ImageEntry], defects: list[Defect], thumb_size: int = 256) -> str:
    """The page as one string; every name and message from the dataset is HTML-escaped."""
    card_of = {e.image: _card_id(e.image) for e in entries}
    by_stem: dict[str, str] = {}
    for e in entries:
        by_stem.setdefault(e.stem, card_of[e.image])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>OkraInsight explorer: {_e(root.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header>",
        f"<h1>{_e(root)}: {len(entries)} images, {len(defects)} defects</h1>",
        '<input id="q" type="search" placeholder="filter by stem or defect kind" autofocus>',
        '<label><input id="only" type="checkbox"> only images with defects</label>',
        ' <span id="count"></span>',
        "</header>",
    ]
    if defects:
        parts.append(f'<section id="defects"><strong>{len(defects)} defects</strong><ul>')
        for d in defects:
            target = card_of.get(d.path) or by_stem.get(d.stem)
            kind = f"<b>{_e(d.kind)}</b>"
            msg = _e(d.message)
            link = f' <a href="#{target}">show</a>' if target else ""
            parts.append(f'<li class="dl" data-kind="{_e(d.kind)}">{kind}: {msg}{link}</li>')
        parts.append("</ul></section>")
    else:
        parts.append('<section id="defects" class="none">No defects found.</section>')
    parts.append('<main id="grid">')
    for e in entries:
        kinds = sorted({d.kind for d in e.defects})
        key = " ".join([e.stem, e.image.name, *kinds]).lower()
        cls = "card bad" if e.defects else "card"
        parts.append(f'<article class="{cls}" id="{card_of[e.image]}" data-key="{_e(key)}">')
        parts.append(f"<h2>{_e(e.image.name)}</h2>")
        pics = [
            _img(e.thumb, "photo", e.size, thumb_size),
            _img(e.overlay, "mask", e.size, thumb_size),
            _img(e.soft, "soft", e.size, thumb_size),
        ]
        if e.thumb is None:
            pics = ['<p class="none">image unreadable</p>']
        parts.append('<div class="pics">' + "".join(pics) + "</div>")
        rows: list[tuple[str, str]] = []
        if e.size is not None:
            rows.append(("size", f"{e.size[0]}x{e.size[1]}"))
        rows.append(("okra", "no mask" if e.okra_fraction is None else f"{100 * e.okra_fraction:.1f} %"))
        if e.pods is not None:
            rows.append(("pods (mask)", str(e.pods)))
        if e.grade is not None:
            rows.append(("grade", e.grade))
        rows += list(e.attributes.items())
        parts.append("<table>" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows))
        parts.append("</table>")
        for d in e.defects:
            parts.append(f'<p class="defect">{_e(d.kind)}: {_e(d.message)}</p>')
        parts.append("</article>")
    parts.append("</main>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
