"""``okra convert``: turn any readable photo (iPhone HEIC, PNG, TIFF, WebP, ...) into an upright JPEG.

Each input file is read with :func:`okrainsight.imageio.read_image` (EXIF orientation
applied, colour converted to RGB) and written as ``<stem>.jpg`` with no orientation tag,
so every later tool sees the photo the way a person does. Writes are atomic.

Where outputs go
----------------
* A file named on the command line goes to ``OUT/<stem>.jpg``.
* A folder is walked (recursively by default) and each image keeps its path relative
  to that folder: ``IN/day1/a.heic`` becomes ``OUT/day1/a.jpg``.
* Name collisions (``a.heic`` and ``a.jpg`` in one folder, or two inputs of the same
  name) are resolved deterministically: every source that would share an output
  name gets its source extension added to the stem (``a_heic.jpg``, ``a_jpg.jpg``),
  and a number (``_2``, ``_3``, ...) is added if that still collides, in sorted order of
  the source paths. Names are compared case-insensitively, so the result is the same
  on macOS and Windows file systems.
* An output that already exists is skipped unless ``overwrite`` is set.

A file that cannot be read or written is recorded in the report with a one-line
reason naming it, and the rest are converted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from okrainsight.errors import ConfigError, OkraError
from okrainsight.imageio import iter_image_files, read_image, write_image

log = logging.getLogger(__name__)

#: Extension of every converted file.
OUTPUT_EXTENSION = ".jpg"


@dataclass(frozen=True)
class ConvertFailure:
    """One input that could not be converted; ``message`` is one line naming the file."""

    source: Path
    message: str


@dataclass
class ConvertReport:
    """What :func:`convert_images` did: ``(source, destination)`` pairs and failures, in input order."""

    converted: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[ConvertFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def summary(self) -> str:
        """One line: counts of converted, skipped and failed files."""
        return (
            f"{len(self.converted)} converted, {len(self.skipped)} skipped (already exist), "
            f"{len(self.failed)} failed"
        )


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def plan_outputs(
    inputs: Iterable[str | os.PathLike[str]], out_dir: str | os.PathLike[str], *, recursive: bool = True
) -> list[tuple[Path, Path]]:
    """Map every input image to its output path (see the module doc for the rules).

    Returns ``(source, destination)`` pairs sorted by source path. Files already inside
    ``out_dir`` are left out when walking folders, so converting in place twice does not
    convert the outputs again.
    """
    out = Path(out_dir)
    wanted: list[tuple[Path, Path]] = []  # (source, relative destination folder)
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for src in iter_image_files([p], recursive=recursive):
                if out.exists() and _is_inside(src, out):
                    continue
                key = src.resolve()
                if key not in seen:
                    seen.add(key)
                    wanted.append((src, src.parent.relative_to(p)))
        else:
            for src in iter_image_files([p], recursive=recursive):
                key = src.resolve() if src.exists() else src
                if key not in seen:
                    seen.add(key)
                    wanted.append((src, Path(".")))
    wanted.sort(key=lambda pair: (pair[1].as_posix(), pair[0].as_posix()))

    def natural(src: Path, rel: Path) -> Path:
        return rel / f"{src.stem}{OUTPUT_EXTENSION}"

    groups: dict[str, list[int]] = {}
    for i, (src, rel) in enumerate(wanted):
        groups.setdefault(natural(src, rel).as_posix().casefold(), []).append(i)
    taken = {key for key, idx in groups.items() if len(idx) == 1}
    dest: dict[int, Path] = {}
    for idx in groups.values():
        if len(idx) == 1:
            dest[idx[0]] = natural(*wanted[idx[0]])
    for key in sorted(k for k, idx in groups.items() if len(idx) > 1):
        for i in groups[key]:
            src, rel = wanted[i]
            tag = src.suffix.lstrip(".").lower() or "noext"
            base = f"{src.stem}_{tag}"
            candidate = rel / f"{base}{OUTPUT_EXTENSION}"
            n = 2
            while candidate.as_posix().casefold() in taken:
                candidate = rel / f"{base}_{n}{OUTPUT_EXTENSION}"
                n += 1
            taken.add(candidate.as_posix().casefold())
            dest[i] = candidate
    pairs = [(src, out / dest[i]) for i, (src, _rel) in enumerate(wanted)]
    return sorted(pairs, key=lambda pair: pair[0].as_posix())


def convert_images(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    quality: int = 92,
    *,
    recursive: bool = True,
    overwrite: bool = False,
    max_pixels: int | None = None,
    progress: bool = True,
) -> ConvertReport:
    """Convert images (files, folders or glob patterns) to upright JPEGs under ``out_dir``.

    Args:
        inputs: files, folders or glob patterns.
        out_dir: destination folder (created if needed).
        quality: JPEG quality, 1..100.
        recursive: walk sub-folders of folder inputs, keeping their relative paths.
        overwrite: replace outputs that already exist (otherwise they are skipped).
        max_pixels: refuse larger images (default :func:`okrainsight.imageio.max_pixels_default`).
        progress: show a progress bar on stderr.

    Returns:
        A :class:`ConvertReport`; a file that fails does not stop the others.

    Raises:
        ConfigError: bad ``quality``, or no input names anything at all.
    """
    if not 1 <= int(quality) <= 100:
        raise ConfigError(f"JPEG quality {quality} must be between 1 and 100")
    if not inputs:
        raise ConfigError("no input files or folders given")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: output must be a folder, but it is a file")
    plan = plan_outputs(inputs, out, recursive=recursive)
    if not plan:
        raise ConfigError(f"no image files found in {', '.join(str(i) for i in inputs)}")
    report = ConvertReport()
    for src, dst in tqdm(plan, desc="convert", unit="image", disable=None if progress else True, leave=False):
        if dst.exists() and not overwrite:
            log.info("%s: skipped, %s exists", src, dst)
            report.skipped.append((src, dst))
            continue
        try:
            rgb = read_image(src, max_pixels=max_pixels)
            write_image(dst, rgb, quality=quality)
        except OkraError as exc:
            report.failed.append(ConvertFailure(src, str(exc)))
            log.info("%s", exc)
            continue
        except OSError as exc:
            reason = exc.strerror or str(exc)
            report.failed.append(ConvertFailure(src, f"{src}: cannot write {dst} ({reason})"))
            continue
        report.converted.append((src, dst))
        log.debug("%s -> %s", src, dst)
    return report
