"""Masks in and out of other tools' formats.

* LabelMe JSON (the original OkraInsight's first approach): polygons (and rectangles,
  circles) drawn on a photo become a mask: :func:`import_labelme`.
* COCO instance segmentation with RLE masks (pycocotools): :func:`export_coco`,
  :func:`import_coco`. Export writes one annotation per pod (from ``instances/`` when the
  dataset has it, else per connected region of the mask); import joins every annotation
  of an image into its mask.
* YOLO segmentation (Ultralytics): ``labels/<stem>.txt`` with one line per region,
  ``0 x1 y1 x2 y2 ...`` in 0..1 of the image size, plus ``images/`` and ``data.yaml``:
  :func:`export_yolo`.

All coordinates are ``(x, y)`` pixels of the oriented image (LabelMe applies EXIF
orientation too). Imports append a manifest record (``kind == "import"``) per mask.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight import __version__
from okrainsight.dataset import DatasetLayout, append_manifest
from okrainsight.errors import DatasetError, MissingDependencyError, OkraError
from okrainsight.imageio import (
    atomic_write_bytes,
    atomic_write_text,
    is_image_file,
    read_image,
    read_mask,
    write_mask,
)

log = logging.getLogger(__name__)
CATEGORY = "okra"


@dataclass
class InterchangeReport:
    """Files written and failures (stem or file, message) of one import/export."""

    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _write_imported_mask(
    layout: DatasetLayout, stem: str, mask: np.ndarray, *, source: str, file: str
) -> None:
    """Write an imported ``(H, W)`` bool mask atomically, then its ``import`` manifest record."""
    write_mask(layout.mask_path(stem), mask)
    append_manifest(
        layout.manifest_path,
        {"kind": "import", "stem": stem, "source": source, "file": file, "time": _now(),
         "version": __version__, "mask_area": round(float(mask.mean()), 6)},
    )  # fmt: skip


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _pycocotools() -> Any:
    try:
        from pycocotools import mask as mask_utils
    except ImportError as exc:  # pragma: no cover - installed with the [label] extra
        raise MissingDependencyError("pycocotools", "label") from exc
    return mask_utils


# ----------------------------------------------------------------------------------
# LabelMe
# ----------------------------------------------------------------------------------


def labelme_to_mask(doc: dict[str, Any], size: tuple[int, int], labels: set[str] | None = None) -> np.ndarray:
    """Rasterise a LabelMe document's shapes into an ``(H, W)`` bool mask (``size`` is ``(w, h)``).

    Polygons, rectangles and circles are filled; ``labels`` (None = all) picks which shapes
    are okra. Vertices are drawn with 1/16-pixel precision.
    """
    w, h = size
    out = np.zeros((h, w), np.uint8)
    shift = 4
    for shape in doc.get("shapes", []):
        if labels is not None and shape.get("label") not in labels:
            continue
        kind = shape.get("shape_type") or "polygon"
        pts = np.asarray(shape.get("points", []), np.float64).reshape(-1, 2)
        if kind == "polygon" and len(pts) >= 3:
            # LabelMe vertices are pixel centres; cv2 with a shift draws them at 1/16 px
            poly = np.round(pts * (1 << shift)).astype(np.int32)
            cv2.fillPoly(out, [poly], 1, lineType=cv2.LINE_8, shift=shift)
        elif kind == "rectangle" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
            out[max(0, round(y0)) : round(y1) + 1, max(0, round(x0)) : round(x1) + 1] = 1
        elif kind == "circle" and len(pts) == 2:
            r = float(np.hypot(*(pts[1] - pts[0])))
            cv2.circle(out, (round(pts[0][0]), round(pts[0][1])), round(r), 1, -1)
        else:
            log.warning("skipped a LabelMe %s shape with %d points", kind, len(pts))
    return out.astype(bool)


def import_labelme(
    src: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    labels: set[str] | None = None,
    overwrite: bool = False,
) -> InterchangeReport:
    """Import every LabelMe ``*.json`` in ``src`` into the dataset ``data``.

    The photo is taken from ``imagePath`` (relative to the JSON) or the embedded
    ``imageData`` and copied into ``data/images/`` unless an image with that stem is there
    already; the mask goes to ``data/masks/<stem>.png``. Existing masks are kept unless
    ``overwrite``.
    """
    layout = DatasetLayout(data)
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    report = InterchangeReport()
    src_dir = Path(src)
    files = sorted(src_dir.glob("*.json")) if src_dir.is_dir() else [src_dir]
    if not files:
        raise DatasetError(f"{src_dir}: no LabelMe .json files found")
    existing = {p.stem: p for p in layout.image_paths()}
    for jf in files:
        try:
            doc = json.loads(jf.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or "shapes" not in doc:
                raise DatasetError(f"{jf}: not a LabelMe file (no 'shapes')")
            image_name = Path(str(doc.get("imagePath") or jf.with_suffix(".jpg").name)).name
            stem = Path(image_name).stem
            if stem in existing:
                target = existing[stem]
            else:
                source = jf.parent / str(doc.get("imagePath") or "")
                target = layout.images_dir / image_name
                if doc.get("imagePath") and source.is_file():
                    shutil.copyfile(source, target)
                elif doc.get("imageData"):
                    atomic_write_bytes(target, base64.b64decode(doc["imageData"]))
                else:
                    raise DatasetError(f"{jf}: image {image_name} not found and no imageData embedded")
                existing[stem] = target
            if layout.mask_path(stem).exists() and not overwrite:
                log.info("%s: mask exists; kept (use overwrite to replace)", stem)
                continue
            img_h, img_w = read_image(target).shape[:2]
            doc_w, doc_h = doc.get("imageWidth"), doc.get("imageHeight")
            if doc_w and doc_h and (int(doc_w), int(doc_h)) != (img_w, img_h):
                raise DatasetError(
                    f"{jf}: drawn on a {doc_w}x{doc_h} image but {target.name} is {img_w}x{img_h}"
                )
            mask = labelme_to_mask(doc, (img_w, img_h), labels)
            _write_imported_mask(layout, stem, mask, source="labelme", file=jf.name)
            report.written.append(stem)
        except (OkraError, OSError, ValueError) as exc:
            report.failed.append((jf.name, str(exc)))
    return report


# ----------------------------------------------------------------------------------
# COCO
# ----------------------------------------------------------------------------------


def _instance_masks(layout: DatasetLayout, stem: str, mask: np.ndarray) -> list[np.ndarray]:
    """One bool mask per pod: from ``instances/<stem>.png`` when present, else connected regions."""
    inst_path = layout.root / "instances" / f"{stem}.png"
    if inst_path.exists():
        from PIL import Image

        with Image.open(inst_path) as im:
            inst = np.asarray(im)
        if inst.shape == mask.shape:
            ids = [int(i) for i in np.unique(inst) if i != 0]
            parts = [(inst == i) & mask for i in ids]
            parts = [p for p in parts if p.any()]
            rest = mask & ~np.any(parts, axis=0) if parts else mask
            if rest.any():
                parts.append(rest)  # e.g. calyx pixels not in any pod id
            return parts
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [lab == i for i in range(1, n)]


def export_coco(data: str | os.PathLike[str], out: str | os.PathLike[str]) -> InterchangeReport:
    """Write the dataset's masks as a COCO instance-segmentation JSON (compressed RLE, category ``okra``).

    ``file_name`` is relative to ``data/images``. Images without a mask are listed without
    annotations (true negatives stay negatives when re-imported).
    """
    mu = _pycocotools()
    layout = DatasetLayout(data).require()
    report = InterchangeReport()
    images, annotations = [], []
    ann_id = 1
    for img_id, path in enumerate(layout.image_paths(), 1):
        stem = path.stem
        mpath = layout.mask_path(stem)
        try:
            if not mpath.exists():
                continue
            mask = read_mask(mpath) > 0
            h, w = mask.shape
            images.append({"id": img_id, "file_name": path.name, "width": w, "height": h})
            for part in _instance_masks(layout, stem, mask):
                rle = mu.encode(np.asfortranarray(part.astype(np.uint8)))
                x, y, bw, bh = (float(v) for v in mu.toBbox(rle))
                rle["counts"] = rle["counts"].decode("ascii")
                annotations.append(
                    {"id": ann_id, "image_id": img_id, "category_id": 1, "segmentation": rle,
                     "area": float(mu.area(rle)), "bbox": [x, y, bw, bh], "iscrowd": 0}
                )  # fmt: skip
                ann_id += 1
            report.written.append(stem)
        except (OkraError, OSError, ValueError) as exc:
            report.failed.append((stem, str(exc)))
    doc = {
        "info": {"description": f"OkraInsight dataset {layout.root.name}", "version": __version__,
                 "date_created": _now()},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": CATEGORY, "supercategory": "vegetable"}],
    }  # fmt: skip
    atomic_write_text(out, json.dumps(doc) + "\n")
    return report


def _ann_to_mask(mu: Any, seg: Any, h: int, w: int) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword notice
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_segmentation(mu, seg, h, w)


def _decode_segmentation(mu: Any, seg: Any, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):  # polygons
        rles = mu.frPyObjects(seg, h, w)
        rle = mu.merge(rles)
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mu.frPyObjects(seg, h, w)
    elif isinstance(seg, dict):
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    else:
        raise ValueError("unknown segmentation encoding")
    return mu.decode(rle).astype(bool)


def import_coco(
    src: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    category: str | None = CATEGORY,
    overwrite: bool = False,
) -> InterchangeReport:
    """Import a COCO JSON's masks (RLE or polygons) into the dataset ``data``.

    Every annotation of the category ``category`` (None = every category) of an image is
    joined into ``masks/<stem>.png``. Images missing from ``data/images`` are copied from
    ``images_dir`` (default: the JSON's folder) when found there.
    """
    mu = _pycocotools()
    src_p = Path(src)
    try:
        doc = json.loads(src_p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{src_p}: not a readable COCO JSON ({exc})") from exc
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise DatasetError(f"{src_p}: not a COCO file (needs 'images' and 'annotations')")
    cats = {c["id"] for c in doc.get("categories", []) if category is None or c.get("name") == category}
    layout = DatasetLayout(data)
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    existing = {p.stem: p for p in layout.image_paths()}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in doc["annotations"]:
        if ann.get("category_id") in cats:
            by_image.setdefault(ann["image_id"], []).append(ann)
    base = Path(images_dir) if images_dir is not None else src_p.parent
    report = InterchangeReport()
    for info in doc["images"]:
        name = Path(str(info["file_name"])).name
        stem = Path(name).stem
        try:
            if stem not in existing:
                candidate = base / str(info["file_name"])
                if not candidate.is_file() or not is_image_file(candidate):
                    raise DatasetError(
                        f"{src_p}: image {info['file_name']} not in {layout.images_dir} or {base}"
                    )
                shutil.copyfile(candidate, layout.images_dir / name)
            if layout.mask_path(stem).exists() and not overwrite:
                continue
            h, w = int(info["height"]), int(info["width"])
            mask = np.zeros((h, w), bool)
            for ann in by_image.get(info["id"], []):
                mask |= _ann_to_mask(mu, ann["segmentation"], h, w)
            _write_imported_mask(layout, stem, mask, source="coco", file=src_p.name)
            report.written.append(stem)
        except (OkraError, OSError, ValueError, KeyError) as exc:
            report.failed.append((stem, str(exc)))
    return report


# ----------------------------------------------------------------------------------
# YOLO segmentation
# ----------------------------------------------------------------------------------


def mask_to_polygons(mask: np.ndarray, *, epsilon: float = 0.5, min_area: float = 4.0) -> list[np.ndarray]:
    """Outer contours of a bool mask as ``(K, 2)`` float (x, y) polygons (K >= 3), simplified by
    ``epsilon`` pixels; regions smaller than ``min_area`` pixels are dropped. Holes are ignored."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = []
    for c in contours:
        if cv2.contourArea(c) < min_area:
            continue
        approx = cv2.approxPolyDP(c, epsilon, True) if epsilon > 0 else c
        if len(approx) >= 3:
            out.append(approx.reshape(-1, 2).astype(np.float64))
    return out


def export_yolo(data: str | os.PathLike[str], out: str | os.PathLike[str]) -> InterchangeReport:
    """Write a YOLO segmentation dataset to ``out``: ``images/`` (hard links or copies),
    ``labels/<stem>.txt`` (``0 x1 y1 ...`` normalised to 0..1) and ``data.yaml``.

    One polygon per pod (from ``instances/`` when present, else per connected region);
    the format has no holes, so background enclosed by one region is filled.

    Images without a mask are left out; a mask with no okra gives an empty label file.
    """
    layout = DatasetLayout(data).require()
    out_p = Path(out)
    (out_p / "images").mkdir(parents=True, exist_ok=True)
    (out_p / "labels").mkdir(parents=True, exist_ok=True)
    report = InterchangeReport()
    for path in layout.image_paths():
        stem = path.stem
        mpath = layout.mask_path(stem)
        if not mpath.exists():
            continue
        try:
            mask = read_mask(mpath) > 0
            h, w = mask.shape
            lines = []
            polys = [poly for part in _instance_masks(layout, stem, mask) for poly in mask_to_polygons(part)]
            for poly in polys:
                # contour vertices are pixel centres; +0.5 moves them to the continuous frame
                xy = np.clip((poly + 0.5) / np.array([w, h]), 0.0, 1.0)
                lines.append("0 " + " ".join(f"{v:.6f}" for v in xy.ravel()))
            atomic_write_text(out_p / "labels" / f"{stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
            dest = out_p / "images" / path.name
            if not dest.exists():
                try:
                    os.link(path, dest)
                except OSError:
                    shutil.copyfile(path, dest)
            report.written.append(stem)
        except (OkraError, OSError, ValueError) as exc:
            report.failed.append((stem, str(exc)))
    yaml = f"path: {out_p.resolve()}\ntrain: images\nval: images\nnames:\n  0: {CATEGORY}\n"
    atomic_write_text(out_p / "data.yaml", yaml)
    return report
