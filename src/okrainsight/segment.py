"""``okra segment``: the main job. Photos, folders, globs and videos in; masks, overlays,
cut-outs, a report and ``results.json`` out. Runs on ONNX Runtime without torch.

Output folder layout (``<name>`` is the input's file stem, made unique when two inputs
share a stem, e.g. ``a/x.jpg`` and ``b/x.jpg`` give ``x`` and ``x-2``)::

    OUT/masks/<name>.png      okra mask, 8-bit 0/255, at the input's oriented size
    OUT/overlays/<name>.jpg   the photo with the mask tinted, pod outlines and pod numbers
    OUT/cutouts/<name>.png    RGBA: the photo with alpha = mask
    OUT/videos/<name>.mp4     for a video input: the annotated video (``.avi`` if mp4 is unavailable)
    OUT/report.html           a static page: every input with its overlay, pods and stats; errors
    OUT/results.json          {"model": {...}, "images": [{"path", "mask", "width", "height",
                              "okra_found", "okra_fraction", "pods": [{"area_px", "bbox",
                              "length_px", "tender_probability"}], "error"}]}

A video's entry carries the same keys (``mask`` is null; ``okra_found`` is true when any
frame has okra, ``okra_fraction`` is the mean over frames) plus ``video`` (the annotated
file), ``fps`` and ``frames`` (per-frame ``index``, ``time_s``, ``okra_found``,
``okra_fraction``, ``pods``).

An input that cannot be read is recorded with a one-line ``error`` naming the file, and
the batch goes on; :func:`failed_count` tells the caller to exit non-zero.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.errors import ConfigError, ImageReadError, OkraError
from okrainsight.imageio import (
    IMAGE_EXTENSIONS,
    atomic_write_text,
    iter_image_files,
    read_image,
    write_image,
    write_mask,
)
from okrainsight.runtime import DEFAULT_THREADS, Segmentation, Segmenter

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv"})
TINT_RGB = (255, 40, 180)
OUTLINE_RGB = (255, 230, 0)
TINT_ALPHA = 0.45


# ----------------------------------------------------------------------------------
# Inputs and names
# ----------------------------------------------------------------------------------


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True for ``.mp4``, ``.mov``, ``.avi`` and ``.mkv`` (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files, folders (walked recursively for images and videos; hidden entries skipped) and
    glob patterns -> a de-duplicated list in the given order (sorted within a folder or glob).

    A name that matches nothing is kept so that processing it records "no such file".
    """
    return iter_image_files(inputs, extensions=IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)


def unique_names(paths: Iterable[Path]) -> list[str]:
    """One output name per path: the file stem, with ``-2``, ``-3`` ... added on collisions
    (first come, first served; case-insensitive so outputs never clash on any file system)."""
    used: set[str] = set()
    names: list[str] = []
    for p in paths:
        stem = p.stem or "input"
        name, k = stem, 1
        while name.lower() in used:
            k += 1
            name = f"{stem}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


# ----------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------


def draw_overlay(image: np.ndarray, seg: Segmentation) -> np.ndarray:
    """The photo with the okra mask tinted, each pod outlined and numbered (1 = largest).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        seg: its segmentation (same ``H, W``).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    out = image.copy()
    m = seg.mask
    if m.any():
        tint = np.array(TINT_RGB, np.float32)
        px = out[m].astype(np.float32)
        out[m] = np.clip(px * (1 - TINT_ALPHA) + tint * TINT_ALPHA, 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    if seg.pods:
        cv2.drawContours(out, [p.contour.reshape(-1, 1, 2) for p in seg.pods], -1, OUTLINE_RGB, thick)
    scale = max(0.4, min(h, w) / 700)
    for i, pod in enumerate(seg.pods, start=1):
        label = str(i)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick + 1)
        org = (int(pod.centroid[0] - tw / 2), int(pod.centroid[1] + th / 2))
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick + 1, cv2.LINE_AA)
    return out


def make_cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA: the photo with alpha 255 on okra and 0 elsewhere."""
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    return np.dstack([image, alpha])


# ----------------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------------


def _error_line(path: Path, exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OkraError) and str(path) in msg:
        return msg
    return f"{path}: {msg}"


def _empty_entry(path: Path) -> dict[str, Any]:
    return {
        "path": str(path),
        "mask": None,
        "width": None,
        "height": None,
        "okra_found": None,
        "okra_fraction": None,
        "pods": [],
        "error": None,
    }


def _segment_image(
    seg: Segmenter, path: Path, name: str, out: Path, threshold: float | None
) -> dict[str, Any]:
    image = read_image(path)
    result = seg.segment(image, threshold=threshold)
    rel_mask = f"masks/{name}.png"
    write_mask(out / rel_mask, result.mask)
    write_image(out / "overlays" / f"{name}.jpg", draw_overlay(image, result), quality=88)
    write_image(out / "cutouts" / f"{name}.png", make_cutout(image, result.mask))
    entry = _empty_entry(path)
    entry.update(
        {
            "mask": rel_mask,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "okra_found": result.okra_found,
            "okra_fraction": round(result.okra_fraction, 6),
            "pods": [p.to_dict() for p in result.pods],
        }
    )
    return entry


def _open_writer(out: Path, name: str, fps: float, size: tuple[int, int]) -> tuple[Any, Path, Path]:
    """A cv2.VideoWriter on a hidden temporary file: mp4 (mp4v), else avi (MJPG)."""
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for ext, code in ((".mp4", "mp4v"), (".avi", "MJPG")):
        final = out / "videos" / f"{name}{ext}"
        tmp = final.with_name(f".{final.stem}.tmp{ext}")
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*code), fps, size)
        if writer.isOpened():
            return writer, tmp, final
        writer.release()
        tmp.unlink(missing_ok=True)
    raise OkraError(f"{out / 'videos'}: OpenCV cannot write mp4 or avi video here")


def _segment_video(
    seg: Segmenter,
    path: Path,
    name: str,
    out: Path,
    threshold: float | None,
    *,
    stride: int,
    max_frames: int | None,
    progress: bool,
) -> dict[str, Any]:
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageReadError(path, "cannot open this video (unknown codec or corrupt file)")
    writer = tmp = final = None
    frames: list[dict[str, Any]] = []
    width = height = 0
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if 0.5 <= fps <= 1000 else 25.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        from tqdm import tqdm

        bar = tqdm(
            total=total or None,
            desc=path.name,
            unit="frame",
            leave=False,
            disable=not progress,
            file=sys.stderr,
        )
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            bar.update(1)
            if index % stride == 0:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                result = seg.segment(rgb, threshold=threshold)
                if writer is None:
                    height, width = rgb.shape[:2]
                    writer, tmp, final = _open_writer(out, name, fps / stride, (width, height))
                writer.write(cv2.cvtColor(draw_overlay(rgb, result), cv2.COLOR_RGB2BGR))
                frames.append(
                    {
                        "index": index,
                        "time_s": round(index / fps, 3),
                        "okra_found": result.okra_found,
                        "okra_fraction": round(result.okra_fraction, 6),
                        "pods": [p.to_dict() for p in result.pods],
                    }
                )
                if max_frames is not None and len(frames) >= max_frames:
                    break
            index += 1
        bar.close()
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if not frames or tmp is None or final is None:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise ImageReadError(path, "no video frames could be decoded")
    os.replace(tmp, final)
    entry = _empty_entry(path)
    entry.update(
        {
            "width": width,
            "height": height,
            "okra_found": any(f["okra_found"] for f in frames),
            "okra_fraction": round(float(np.mean([f["okra_fraction"] for f in frames])), 6),
            "video": f"videos/{final.name}",
            "fps": round(fps, 3),
            "frames": frames,
        }
    )
    return entry


def load_segmenter(
    model: str | os.PathLike[str] | Segmenter,
    threads: int = DEFAULT_THREADS,
    zooms: tuple[float, ...] | None = None,
    flips: tuple[str, ...] | None = None,
) -> Segmenter:
    """``model`` as a :class:`Segmenter` (a built-in name, a model folder, an ``.onnx`` file, or one);
    ``zooms`` (see :mod:`okrainsight.tiling`) and ``flips`` (:mod:`okrainsight.flips`), when given,
    replace the card's (on a :class:`Segmenter` passed in, they set its attributes)."""
    if isinstance(model, Segmenter):
        if zooms is not None:
            model.zooms = zooms
        if flips is not None:
            model.flips = flips
        return model
    return Segmenter.from_path(model, threads=threads, zooms=zooms, flips=flips)


def segment_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    model: str | os.PathLike[str] | Segmenter = "default",
    threshold: float | None = None,
    *,
    threads: int = DEFAULT_THREADS,
    progress: bool = True,
    video_stride: int = 1,
    max_video_frames: int | None = None,
    grader: str | os.PathLike[str] | Any | None = None,
    zooms: tuple[float, ...] | None = None,
    flips: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Segment every input and write the output folder (see the module docstring).

    Args:
        inputs: image files, folders (recursive), glob patterns and video files.
        out_dir: the output folder (created).
        model: built-in name (``default``), model folder, ``.onnx`` file, or a :class:`Segmenter`.
        threshold: probability threshold overriding the card's (0 < t < 1).
        threads: ONNX Runtime threads.
        progress: show a progress bar on stderr.
        video_stride: segment every n-th video frame (the annotated video holds those frames).
        max_video_frames: stop each video after this many segmented frames.
        grader: tip-break grader (:mod:`okrainsight.grading`): a grader folder, ``"default"`` (the
            built-in one, skipped when not installed), a ``Grader``, or None (no verdicts). With a
            grader each pod also carries ``okra_plausible`` and ``gate``, and ``tender_probability``
            is set for pods that passed the gate.
        zooms: how photos are tiled (:mod:`okrainsight.tiling`); None: the model card's.
        flips: mirror images averaged in (:mod:`okrainsight.flips`); None: the model card's.

    Returns:
        The ``results.json`` content. Inputs that failed carry an ``error`` (one line naming
        the file); use :func:`failed_count`.

    Raises:
        ModelError: the model cannot be loaded. ConfigError: bad options or no inputs.
    """
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"--threshold must lie strictly between 0 and 1, got {threshold}")
    if video_stride < 1:
        raise ConfigError(f"video stride must be at least 1, got {video_stride}")
    paths = expand_inputs(inputs)
    if not paths:
        raise ConfigError("no inputs given: name image files, folders, globs or videos")
    seg = load_segmenter(model, threads, zooms, flips)
    if grader is not None and seg.grader is None:
        from okrainsight.grading.model import resolve_grader

        seg.grader = resolve_grader(grader)
    out = Path(out_dir)
    for sub in ("masks", "overlays", "cutouts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = unique_names(paths)
    entries: list[dict[str, Any]] = []
    from tqdm import tqdm

    for path, name in tqdm(
        list(zip(paths, names, strict=True)),
        desc="segment",
        unit="input",
        disable=not progress,
        file=sys.stderr,
    ):
        try:
            if is_video_file(path):
                entry = _segment_video(
                    seg,
                    path,
                    name,
                    out,
                    threshold,
                    stride=video_stride,
                    max_frames=max_video_frames,
                    progress=progress,
                )
            else:
                entry = _segment_image(seg, path, name, out, threshold)
        except (OkraError, OSError, ValueError, cv2.error, MemoryError) as exc:
            entry = _empty_entry(path)
            entry["error"] = _error_line(path, exc)
            log.info("%s", entry["error"])  # recorded in results; the CLI prints it once
        entries.append(entry)
    results = {"model": seg.summary(threshold), "images": entries}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "report.html", render_report(results))
    return results


def failed_count(results: dict[str, Any]) -> int:
    """How many inputs in ``results`` carry an error."""
    return sum(1 for e in results.get("images", []) if e.get("error"))


# ----------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem} .meta{color:#555}
.grid{display:flex;flex-wrap:wrap;gap:1rem}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem;width:340px}
.card img,.card video{width:100%;height:auto;border-radius:4px}
.card h2{font-size:.95rem;margin:.3rem 0;word-break:break-all}
table{border-collapse:collapse;font-size:.85rem} td,th{padding:2px 6px;border-bottom:1px solid #eee}
.err{color:#a00;font-family:monospace;font-size:.85rem}
"""


def _verdict_text(pod: dict[str, Any]) -> str:
    """``"tender (p=0.83)"``, ``"tough (p=0.12)"`` or ``"no verdict: <gate reason>"``."""
    p = pod.get("tender_probability")
    if p is None:
        return f"no verdict: {pod.get('gate') or 'not graded'}"
    return f"{'tender' if p >= 0.5 else 'tough'} (p={p:.2f})"


def render_report(results: dict[str, Any]) -> str:
    """A static HTML page for ``results`` (links are relative to the output folder)."""
    e = html.escape
    model = results.get("model", {})
    images = results.get("images", [])
    ok = [i for i in images if not i.get("error")]
    bad = [i for i in images if i.get("error")]
    found = sum(1 for i in ok if i.get("okra_found"))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>OkraInsight segmentation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>OkraInsight segmentation report</h1>",
        f"<p class='meta'>Model <b>{e(str(model.get('name')))}</b> ({e(str(model.get('arch')))}, "
        f"input {e('x'.join(str(v) for v in model.get('input_size', [])))}, threshold "
        f"{e(str(model.get('threshold')))}). {len(images)} inputs: {found} with okra, "
        f"{len(ok) - found} without, {len(bad)} failed. "
        f"Generated {e(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>",
    ]
    if bad:
        parts.append("<h2>Errors</h2><ul>")
        parts.extend(f"<li class='err'>{e(str(i['error']))}</li>" for i in bad)
        parts.append("</ul>")
    parts.append("<div class='grid'>")
    for item in ok:
        parts.append("<div class='card'>")
        if item.get("video"):
            parts.append(f"<video src='{e(item['video'])}' controls muted></video>")
        else:
            mask = item.get("mask") or ""
            overlay = "overlays/" + Path(mask).stem + ".jpg"
            cutout = "cutouts/" + Path(mask).stem + ".png"
            parts.append(f"<a href='{e(overlay)}'><img src='{e(overlay)}' loading='lazy' alt='overlay'></a>")
        parts.append(f"<h2>{e(item['path'])}</h2>")
        frac = item.get("okra_fraction") or 0.0
        parts.append(
            f"<div>{item['width']}x{item['height']} px &middot; okra "
            f"{'found' if item.get('okra_found') else 'not found'} &middot; {100 * frac:.2f}% of pixels"
        )
        if item.get("video"):
            frames = item.get("frames", [])
            with_okra = sum(1 for f in frames if f.get("okra_found"))
            parts.append(f" &middot; {len(frames)} frames, {with_okra} with okra</div>")
        else:
            parts.append(
                f" &middot; <a href='{e(mask)}'>mask</a> &middot; <a href='{e(cutout)}'>cut-out</a></div>"
            )
            pods = item.get("pods", [])
            if pods:
                graded = any("okra_plausible" in p for p in pods)
                head = "<th>verdict</th>" if graded else ""
                parts.append(
                    f"<table><tr><th>#</th><th>area px</th><th>length px</th><th>box</th>{head}</tr>"
                )
                for k, pod in enumerate(pods, start=1):
                    box = ", ".join(str(v) for v in pod["bbox"])
                    cell = f"<td>{e(_verdict_text(pod))}</td>" if graded else ""
                    parts.append(
                        f"<tr><td>{k}</td><td>{pod['area_px']}</td><td>{pod['length_px']}</td>"
                        f"<td>[{box}]</td>{cell}</tr>"
                    )
                parts.append("</table>")
        parts.append("</div>")
    parts.append("</div></body></html>\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------
# Webcam
# ----------------------------------------------------------------------------------


def has_display() -> bool:
    """Whether a window can be shown (on Linux: ``DISPLAY`` or ``WAYLAND_DISPLAY`` is set)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def segment_camera(
    source: int,
    model: str | os.PathLike[str] | Segmenter = "default",
    threshold: float | None = None,
    *,
    threads: int = DEFAULT_THREADS,
    window: str = "okra segment (q to quit)",
    zooms: tuple[float, ...] | None = None,
    flips: tuple[str, ...] | None = None,
) -> int:
    """Live overlay from camera ``source`` in a window, with frames per second; ``q``/Esc quits.

    Returns:
        The number of frames shown.

    Raises:
        ConfigError: no display, an OpenCV build without windows, or the camera does not open.

    ``zooms`` overrides the card's tiling (:mod:`okrainsight.tiling`); ``(0,)`` is the fastest.
    ``flips`` overrides the card's flip averaging (:mod:`okrainsight.flips`); ``()`` is the fastest.
    """
    if not has_display():
        raise ConfigError(
            f"--source {source} needs a display for the live window and none was found "
            "(DISPLAY is not set); segment a recorded video file instead"
        )
    seg = load_segmenter(model, threads, zooms, flips)
    cap = cv2.VideoCapture(int(source))
    if not cap.isOpened():
        raise ConfigError(f"camera {source} could not be opened (is it connected and free?)")
    shown = 0
    fps = 0.0
    try:
        last = time.perf_counter()
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            result = seg.segment(rgb, threshold=threshold)
            frame = cv2.cvtColor(draw_overlay(rgb, result), cv2.COLOR_RGB2BGR)
            now = time.perf_counter()
            fps = 0.9 * fps + 0.1 * (1.0 / max(now - last, 1e-6)) if shown else 1.0 / max(now - last, 1e-6)
            last = now
            text = f"{fps:5.1f} fps  pods: {len(result.pods)}"
            cv2.putText(frame, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(frame, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
            try:
                cv2.imshow(window, frame)
                key = cv2.waitKey(1) & 0xFF
            except cv2.error as exc:
                raise ConfigError(
                    "this OpenCV build cannot open windows (opencv-python-headless); "
                    "install opencv-python for --source"
                ) from exc
            shown += 1
            if key in (ord("q"), 27):
                break
    finally:
        cap.release()
        with contextlib.suppress(cv2.error):
            cv2.destroyAllWindows()
    return shown


__all__ = [
    "VIDEO_EXTENSIONS",
    "draw_overlay",
    "expand_inputs",
    "failed_count",
    "has_display",
    "is_video_file",
    "load_segmenter",
    "make_cutout",
    "render_report",
    "segment_camera",
    "segment_inputs",
    "unique_names",
]
