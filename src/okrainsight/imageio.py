"""Reading photos and masks, writing files atomically.

Every other part of OkraInsight reads and writes images through this module, so
that orientation, colour conversion, size limits and error messages are the same
everywhere.

Conventions
-----------
* An *image* is a ``numpy.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``, RGB,
  values 0..255, in the orientation a person sees it (EXIF orientation applied).
* A *mask* is a ``numpy.ndarray`` of shape ``(H, W)``, dtype ``uint8``, values 0 or
  255 (okra = 255), the same size as its oriented image. On disk it is an 8-bit
  single-channel PNG.
* Pixel coordinates are ``(x, y)`` with the origin at the top-left pixel of the
  oriented image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from okrainsight.errors import ImageReadError, ImageTooLargeError, OkraError

try:  # HEIC/HEIF (iPhone photos)
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:  # pragma: no cover - pillow-heif is a core dependency
    HEIF_AVAILABLE = False

#: Default pixel limit (width x height) above which an image is refused.
#: 100 megapixels admits every phone camera (48 MP sensors) and refuses
#: decompression bombs. Override per call or with the ``OKRA_MAX_PIXELS`` variable.
DEFAULT_MAX_PIXELS = 100_000_000

#: File extensions treated as images when walking folders (lower case, with dot).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".heif", ".bmp", ".gif"}
)


def max_pixels_default() -> int:
    """The pixel limit in force: ``OKRA_MAX_PIXELS`` from the environment, else the default."""
    raw = os.environ.get("OKRA_MAX_PIXELS")
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError as exc:
        raise OkraError(f"OKRA_MAX_PIXELS={raw!r} is not a whole number of pixels") from exc
    if value <= 0:
        raise OkraError(f"OKRA_MAX_PIXELS={raw!r} must be positive")
    return value


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """Open ``path`` with Pillow, check its header size, and load its pixels."""
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageReadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLargeError(
                    path,
                    f"image is {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} "
                    "(raise it with OKRA_MAX_PIXELS if the file is trusted)",
                )
            img.load()
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(path, f"image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if "truncated" in msg.lower() or "end of file" in msg.lower():
            msg = "image data is truncated (the file is incomplete)"
        raise ImageReadError(path, f"corrupt image: {msg}") from exc
    return img


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an (H, W, 3) uint8 RGB array (alpha composited on white)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        grey = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(np.round(arr * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def _read_with_opencv(path: Path) -> np.ndarray | None:
    """Fallback for files Pillow opens only lossily (16-bit colour PNG/TIFF): (H, W, 3) uint8 or None."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if arr is None or arr.ndim != 3 or arr.dtype != np.uint16:
        return None
    arr8 = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
    if arr8.shape[2] == 4:
        alpha = arr8[:, :, 3:4].astype(np.float64) / 255.0
        arr8 = np.round(arr8[:, :, :3] * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(arr8[:, :, 2::-1])  # BGR -> RGB


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> np.ndarray:
    """Read a photo as RGB.

    Args:
        path: JPEG, PNG, WebP, TIFF, BMP, GIF (first frame) or HEIC/HEIF file.
        max_pixels: refuse images with more pixels than this (default
            :func:`max_pixels_default`).

    Returns:
        ``(H, W, 3)`` uint8 RGB array, EXIF orientation applied; transparent
        pixels composited on white; grey, palette, CMYK and 16-bit converted.

    Raises:
        ImageReadError: missing, empty, truncated, corrupt or non-image file.
        ImageTooLargeError: more pixels than ``max_pixels``.
    """
    p = Path(path)
    limit = max_pixels_default() if max_pixels is None else int(max_pixels)
    img = _open_checked(p, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            oriented = ImageOps.exif_transpose(img)
        bits16 = img.format in ("PNG", "TIFF") and img.mode in ("RGB", "RGBA") and _is_16bit_colour(p, img)
        if bits16:
            arr = _read_with_opencv(p)
            if arr is not None:
                arr = _apply_orientation(arr, img.getexif().get(0x0112, 1))
                if arr.shape[:2] == (oriented.size[1], oriented.size[0]):
                    return np.ascontiguousarray(arr)
        return np.ascontiguousarray(_to_rgb_uint8(oriented))
    except ImageReadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageReadError(p, f"cannot convert image to RGB: {msg}") from exc
    finally:
        img.close()


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, ...) array stored with EXIF ``orientation`` (1..8) the way a person sees it.

    Matches :func:`PIL.ImageOps.exif_transpose`; used for pixels decoded without Pillow.
    """
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 1)[:, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    fn = transforms.get(int(orientation) if isinstance(orientation, int) else 1)
    return arr if fn is None else fn(arr)


def _is_16bit_colour(path: Path, img: Image.Image) -> bool:
    """True when a PNG/TIFF stores 16 bits per colour channel (Pillow would reduce it lossily)."""
    if img.format == "PNG":
        with open(path, "rb") as fh:
            head = fh.read(26)
        return len(head) >= 25 and head[12:16] == b"IHDR" and head[24] == 16
    if img.format == "TIFF":
        bps = img.tag_v2.get(258) if hasattr(img, "tag_v2") else None
        if isinstance(bps, tuple):
            return any(b == 16 for b in bps)
        return bps == 16
    return False


def image_size(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` of the image after EXIF orientation, reading only what is needed."""
    p = Path(path)
    limit = max_pixels_default() if max_pixels is None else int(max_pixels)
    img = _open_checked(p, limit)
    try:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)
        return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    finally:
        img.close()


def read_mask(path: str | os.PathLike[str], *, binarize: bool = True) -> np.ndarray:
    """Read a mask PNG.

    Returns:
        ``(H, W)`` uint8. With ``binarize`` (default) values are 0 or 255
        (pixels >= 128 become 255); without, the stored grey values as they are.
    """
    p = Path(path)
    img = _open_checked(p, max_pixels_default())
    try:
        if img.mode in ("I;16", "I;16L", "I;16B", "I"):
            arr = (np.asarray(img).astype(np.float64) / 257.0).round().astype(np.uint8)
        elif img.mode == "L":
            arr = np.asarray(img)
        elif img.mode in ("RGBA", "LA"):
            arr = np.asarray(img.convert("RGBA"))[:, :, :3].max(axis=2)
        else:
            arr = np.asarray(img.convert("L"))
    finally:
        img.close()
    if binarize:
        return np.where(arr >= 128, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(arr)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[io.IOBase]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash or an exception inside the ``with`` block leaves ``path`` untouched
    (either the old file or no file) and removes the temporary file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    with atomic_output(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def encode_png(array: np.ndarray) -> bytes:
    """Encode an (H, W) uint8 or (H, W, 3|4) uint8 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write a mask as an 8-bit single-channel PNG with values 0/255, atomically.

    Args:
        path: destination ``.png``.
        mask: ``(H, W)`` bool, or integer/float array where non-zero (``> 0.5`` for
            floats in 0..1) means okra.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise OkraError(f"{path}: a mask must be 2-D (H, W), got shape {m.shape}")
    if m.dtype == bool:
        out = m
    elif np.issubdtype(m.dtype, np.floating):
        out = m > (0.5 if m.max(initial=0) <= 1.0 else 127.5)
    else:
        out = m > (127 if m.max(initial=0) > 1 else 0)
    atomic_write_bytes(path, encode_png(np.where(out, 255, 0).astype(np.uint8)))


def write_soft(path: str | os.PathLike[str], probability: np.ndarray) -> None:
    """Write a probability map (``(H, W)`` float in 0..1) as an 8-bit PNG, 0..255, atomically."""
    p = np.asarray(probability, dtype=np.float64)
    if p.ndim != 2:
        raise OkraError(f"{path}: a probability map must be 2-D (H, W), got shape {p.shape}")
    atomic_write_bytes(path, encode_png(np.clip(np.round(p * 255.0), 0, 255).astype(np.uint8)))


def write_image(path: str | os.PathLike[str], image: np.ndarray, *, quality: int = 92) -> None:
    """Write an (H, W, 3) uint8 RGB (or (H, W, 4) RGBA for PNG) image atomically.

    The format follows the extension: ``.jpg``/``.jpeg`` (``quality`` 1..100), ``.png``, ``.webp``.
    """
    target = Path(path)
    ext = target.suffix.lower()
    arr = np.ascontiguousarray(image)
    buf = io.BytesIO()
    pil = Image.fromarray(arr)
    if ext in (".jpg", ".jpeg"):
        if pil.mode != "RGB":
            pil = pil.convert("RGB")
        pil.save(buf, format="JPEG", quality=int(quality), optimize=True)
    elif ext == ".png":
        pil.save(buf, format="PNG", compress_level=6)
    elif ext == ".webp":
        pil.save(buf, format="WEBP", quality=int(quality))
    else:
        raise OkraError(f"{target}: cannot write images with extension {ext!r}; use .jpg, .png or .webp")
    atomic_write_bytes(target, buf.getvalue())


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file's extension is one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def iter_image_files(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = True,
    extensions: Iterable[str] | None = None,
) -> list[Path]:
    """Expand files, folders and glob patterns into a de-duplicated list of paths, in the given
    order (sorted within a folder or a pattern).

    Folders are walked (recursively by default) for files whose lower-case extension is in
    ``extensions`` (default :data:`IMAGE_EXTENSIONS`; ``okra segment`` adds video extensions);
    hidden files and folders are skipped. A file named directly is kept whatever its
    extension, so that reading it reports the problem. A pattern with ``*``, ``?`` or
    ``[`` is expanded with :mod:`glob`. A name or pattern that matches nothing is kept too,
    so the caller reports it as missing.
    """
    import glob

    wanted = IMAGE_EXTENSIONS if extensions is None else frozenset(e.lower() for e in extensions)
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.glob("*")
            found = sorted(
                q
                for q in walker
                if q.is_file()
                and q.suffix.lower() in wanted
                and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
            for q in found:
                add(q)
        elif any(ch in s for ch in "*?[") and not p.exists():
            files = [Path(m) for m in sorted(glob.glob(s, recursive=True)) if Path(m).is_file()]
            for mp in files or [p]:
                add(mp)
        else:
            add(p)
    return out


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file, read in chunks: a checkpoint's (or any file's) provenance digest."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
