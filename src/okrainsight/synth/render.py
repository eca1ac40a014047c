"""Writing a rendered data set: ``okra synth``.

Layout written into ``OUT`` (see :mod:`okrainsight.dataset`)::

    images/<stem>.jpg        rendered photo (JPEG quality 92)
    masks/<stem>.png         0/255 okra mask
    instances/<stem>.png     16-bit PNG, 0 = background, i = pod i of the manifest record
    manifest.jsonl           one record per image: stem, source "synth", seed, kind, size, pods, renderer
                             (kind "cutout": real pods pasted from ``--pods``, named in pods[].cutout)
    prompts.json             two positive points on the largest visible pod's axis per image with okra
    labels.csv               stem,grade (tender|tough) for images holding exactly one pod

Image ``i`` is rendered from a seed derived from ``(seed, i)`` only, so the output does
not depend on the number of workers. Re-running into the same folder skips images
whose files and manifest record already exist (resumable).
"""

from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from okrainsight.dataset import DatasetLayout, append_manifest, latest_manifest_by_stem, save_prompts
from okrainsight.errors import ConfigError, ImageReadError
from okrainsight.imageio import (
    atomic_write_bytes,
    atomic_write_text,
    encode_png,
    iter_image_files,
    read_image,
)
from okrainsight.synth.cutouts import Cutout, load_cutouts, render_cutout_scene
from okrainsight.synth.scenes import KINDS, RENDERER_VERSION, _photo_background, render_scene

log = logging.getLogger(__name__)

INSTANCES_DIR = "instances"
#: Longest side real photographs are reduced to when loaded (crops are resized again per image).
PHOTO_MAX_SIDE = 1024


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` of a data set rendered with ``seed`` (independent of workers)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def load_photos(folder: str | os.PathLike[str], what: str) -> tuple[list[np.ndarray], list[str]]:
    """Read every image under ``folder`` (reduced to :data:`PHOTO_MAX_SIDE`).

    Unreadable files are skipped with one warning line each, naming the file. Returns
    ``(photos, warnings)``. Raises :class:`ConfigError` when the folder does not exist or
    holds no readable image at all.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: {what} folder does not exist")
    photos: list[np.ndarray] = []
    warnings: list[str] = []
    for path in iter_image_files([root]):
        try:
            img = read_image(path)
        except ImageReadError as exc:
            msg = f"skipped {what} file {exc}"
            log.warning(msg)
            warnings.append(msg)
            continue
        h, w = img.shape[:2]
        scale = PHOTO_MAX_SIDE / max(h, w)
        if scale < 1:
            img = cv2.resize(
                img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
        if min(img.shape[:2]) < 8:
            msg = f"skipped {what} file {path}: image is too small ({w}x{h})"
            log.warning(msg)
            warnings.append(msg)
            continue
        photos.append(img)
    if not photos:
        raise ConfigError(f"{root}: no readable image in the {what} folder")
    return photos, warnings


def _negative_from_photo(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random crop of a real photograph without okra, resized to ``size`` (uint8)."""
    w, h = size
    img = _photo_background(photo, rng, h, w)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


# Worker state, set once per process by _init_worker (the process pool's initializer).
_WORKER: dict[str, Any] = {}


def _init_worker(backgrounds: list[np.ndarray], negatives: list[np.ndarray], cutouts: list[Cutout]) -> None:
    cv2.setNumThreads(1)
    _WORKER["backgrounds"] = backgrounds
    _WORKER["negatives"] = negatives
    _WORKER["cutouts"] = cutouts


def _render_one(
    job: tuple[int, int, tuple[int, int], float, tuple[str, ...] | None, bool, float, float],
    backgrounds: list[np.ndarray] | None = None,
    negatives: list[np.ndarray] | None = None,
    cutouts: list[Cutout] | None = None,
) -> dict[str, Any]:
    """Render image ``index`` and encode its files. In a pool worker the photos come from the
    worker state :func:`_init_worker` set; a serial caller passes them (no module state touched)."""
    index, seed, size, neg_fraction, kinds, include_stem, bg_fraction, pod_fraction = job
    s = image_seed(seed, index)
    rng = np.random.default_rng([s, 1])
    if backgrounds is None:
        backgrounds = _WORKER.get("backgrounds", [])
    if negatives is None:
        negatives = _WORKER.get("negatives", [])
    if cutouts is None:
        cutouts = _WORKER.get("cutouts", [])
    # drawn from its own stream, so that adding --pods leaves the other images as they were
    use_cutout = bool(cutouts) and np.random.default_rng([s, 2]).random() < pod_fraction
    kind: str | None = None
    if kinds:
        kind = kinds[int(rng.integers(0, len(kinds)))]
    w, h = size
    if negatives and rng.random() < neg_fraction:
        photo_i = int(rng.integers(0, len(negatives)))
        image = _negative_from_photo(negatives[photo_i], rng, size)
        mask = np.zeros((h, w), np.uint8)
        instances = np.zeros((h, w), np.uint16)
        pods: list[dict] = []
        kind_out = "real-negative"
    else:
        background = None
        if use_cutout:
            if backgrounds and rng.random() < bg_fraction:
                background = backgrounds[int(rng.integers(0, len(backgrounds)))]
            scene = render_cutout_scene(s, size, cutouts, background=background, decoys=negatives or None)
        else:
            if backgrounds and rng.random() < bg_fraction and kind not in ("white", "shop", "bunch"):
                background = backgrounds[int(rng.integers(0, len(backgrounds)))]
                if kind is None:
                    kind = "photo" if rng.random() < 0.8 else "negative"
            scene = render_scene(s, size, kind, include_stem=include_stem, background=background)
        image, mask, instances, pods, kind_out = (
            scene.image,
            scene.mask,
            scene.instances,
            scene.pods,
            scene.kind,
        )
    ok, jpg = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    ok, inst_png = cv2.imencode(".png", instances)
    return {
        "index": index,
        "seed": s,
        "kind": kind_out,
        "pods": pods,
        "jpg": jpg.tobytes(),
        "mask_png": encode_png(mask),
        "inst_png": inst_png.tobytes(),
    }


def _prompt_for(pods: list[dict]) -> dict[str, Any] | None:
    """Two positive points on the axis of the largest visible pod (at 1/3 and 2/3 of its visible axis)."""
    candidates = [p for p in pods if len(p.get("axis_points") or []) >= 2]
    if not candidates:
        return None
    best = max(candidates, key=lambda p: p.get("area_px", 0))
    pts = best["axis_points"]
    n = len(pts)
    a, b = pts[round((n - 1) / 3)], pts[round(2 * (n - 1) / 3)]
    if a == b:
        b = pts[-1]
    x0, y0, x1, y1 = best["bbox"]
    return {"points": [a, b], "labels": [1, 1], "box": [x0, y0, x1, y1]}


def render_dataset(
    out: str | os.PathLike[str],
    n: int,
    seed: int,
    size: tuple[int, int] = (512, 384),
    *,
    workers: int | None = None,
    backgrounds: str | os.PathLike[str] | None = None,
    negatives: str | os.PathLike[str] | None = None,
    negative_fraction: float = 0.1,
    background_fraction: float = 0.5,
    kinds: Sequence[str] | None = None,
    include_stem: bool = False,
    pods: str | os.PathLike[str] | None = None,
    pod_fraction: float = 0.25,
    progress: bool = True,
) -> Path:
    """Render ``n`` scenes into the data set folder ``out``; return its path.

    Args:
        out: data set folder (created when missing; existing images of the same stems are kept).
        n: number of images; ``seed``: base seed; ``size``: ``(width, height)``.
        workers: processes (default ``os.cpu_count()``); 1 renders in this process.
        backgrounds: folder of photographs to composite pods onto (any photos; ``background_fraction``
            of the images use one).
        negatives: folder of photographs without okra, mixed in as empty-mask images
            (``negative_fraction`` of the images).
        kinds: restrict to these scene kinds (see :data:`okrainsight.synth.scenes.KINDS`); each
            rendered scene draws one entry uniformly, so a kind listed twice is drawn twice as
            often (the ``negatives`` and ``pods`` images are drawn before and ignore it).
        include_stem: put the stem in the mask too.
        pods: folder of labelled real photographs (``images/`` + ``masks/``) whose okra pixels
            are cut out and pasted into ``pod_fraction`` of the images
            (:mod:`okrainsight.synth.cutouts`; manifest kind ``cutout``).
        progress: show a progress bar on stderr.
    """
    if n < 0:
        raise ConfigError(f"--n must be 0 or more, got {n}")
    if not 0.0 <= negative_fraction <= 1.0:
        raise ConfigError(f"--negative-fraction must be between 0 and 1, got {negative_fraction}")
    if kinds:
        bad = [k for k in kinds if k not in KINDS]
        if bad:
            raise ConfigError(f"unknown scene kind(s) {', '.join(bad)}; choose from {', '.join(KINDS)}")
    bgs, _ = load_photos(backgrounds, "backgrounds") if backgrounds is not None else ([], [])
    negs, _ = load_photos(negatives, "negatives") if negatives is not None else ([], [])
    if not 0.0 <= pod_fraction <= 1.0:
        raise ConfigError(f"--pod-fraction must be between 0 and 1, got {pod_fraction}")
    cutouts = load_cutouts(pods) if pods is not None else []
    layout = DatasetLayout(out)
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    layout.masks_dir.mkdir(parents=True, exist_ok=True)
    inst_dir = layout.root / INSTANCES_DIR
    inst_dir.mkdir(parents=True, exist_ok=True)
    done = latest_manifest_by_stem(layout.manifest_path)
    width = max(6, len(str(max(n - 1, 0))))

    def stem_of(i: int) -> str:
        return f"synth_{seed}_{i:0{width}d}"

    todo = [
        i
        for i in range(n)
        if not (
            stem_of(i) in done
            and (layout.images_dir / f"{stem_of(i)}.jpg").exists()
            and layout.mask_path(stem_of(i)).exists()
        )
    ]
    job_kinds = tuple(kinds) if kinds else None
    jobs = [
        (
            i,
            int(seed),
            (int(size[0]), int(size[1])),
            float(negative_fraction),
            job_kinds,
            include_stem,
            float(background_fraction),
            float(pod_fraction),
        )
        for i in todo
    ]
    nworkers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
    from tqdm import tqdm

    bar = tqdm(total=n, initial=n - len(todo), desc="okra synth", unit="img", disable=not progress)

    def write(res: dict[str, Any]) -> None:
        stem = stem_of(res["index"])
        atomic_write_bytes(layout.images_dir / f"{stem}.jpg", res["jpg"])
        atomic_write_bytes(layout.mask_path(stem), res["mask_png"])
        atomic_write_bytes(inst_dir / f"{stem}.png", res["inst_png"])
        record = {
            "stem": stem,
            "source": "synth",
            "seed": res["seed"],
            "base_seed": int(seed),
            "index": res["index"],
            "kind": res["kind"],
            "size": [int(size[0]), int(size[1])],
            "include_stem": include_stem,
            "pods": res["pods"],
            "renderer": RENDERER_VERSION,
        }
        append_manifest(layout.manifest_path, record)
        done[stem] = record
        bar.update(1)

    try:
        if nworkers == 1 or len(jobs) <= 1:
            for job in jobs:
                write(_render_one(job, bgs, negs, cutouts))
        else:
            # Fresh worker processes (forkserver/spawn), not fork: forking a process whose OpenCV
            # thread pool has run (loading the photos) can deadlock the children.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            with ProcessPoolExecutor(
                nworkers, mp_context=ctx, initializer=_init_worker, initargs=(bgs, negs, cutouts)
            ) as pool:
                for res in pool.map(
                    _render_one, jobs, chunksize=max(1, min(8, len(jobs) // (nworkers * 4) or 1))
                ):
                    write(res)
    finally:
        bar.close()
    _write_prompts_and_labels(layout, [stem_of(i) for i in range(n)], done)
    return layout.root


def _write_prompts_and_labels(
    layout: DatasetLayout, stems: list[str], records: dict[str, dict[str, Any]]
) -> None:
    prompts: dict[str, dict[str, Any]] = {}
    rows: list[tuple[str, str]] = []
    for stem in stems:
        rec = records.get(stem)
        if rec is None:
            continue
        pods = rec.get("pods") or []
        p = _prompt_for(pods)
        if p is not None:
            prompts[stem] = p
        if len(pods) == 1 and "tender" in pods[0]:  # a pasted real pod has no known grade
            rows.append((stem, "tender" if pods[0]["tender"] else "tough"))
    save_prompts(layout.prompts_path, prompts)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["stem", "grade"])
    writer.writerows(rows)
    atomic_write_text(layout.labels_path, buf.getvalue())
