"""Tests of okrainsight.imageio: every input format, orientation, colour modes, errors, atomic writes."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps

from okrainsight import imageio
from okrainsight.errors import ImageReadError, ImageTooLargeError, OkraError
from okrainsight.imageio import (
    atomic_output,
    image_size,
    iter_image_files,
    read_image,
    read_mask,
    write_image,
    write_mask,
    write_soft,
)

W, H = 48, 32


def gradient_rgb(w: int = W, h: int = H) -> np.ndarray:
    """A smooth (h, w, 3) uint8 test picture: red grows with x, green with y, blue constant."""
    x = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([x, y, np.full_like(x, 90)], axis=2).round().astype(np.uint8)


def marked_rgb(w: int = W, h: int = H) -> np.ndarray:
    """Grey picture with a red block in the top-left corner, to see where rotations put it."""
    arr = np.full((h, w, 3), 128, np.uint8)
    arr[: h // 4, : w // 4] = (255, 0, 0)
    return arr


# ---------------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("ext", "fmt", "lossless"),
    [
        (".jpg", "JPEG", False),
        (".png", "PNG", True),
        (".webp", "WEBP", False),
        (".tif", "TIFF", True),
        (".heic", "HEIF", False),
        (".bmp", "BMP", True),
        (".gif", "GIF", False),
    ],
)
def test_reads_every_format(tmp_path: Path, ext: str, fmt: str, lossless: bool) -> None:
    src = gradient_rgb()
    path = tmp_path / f"photo{ext}"
    pil = Image.fromarray(src)
    if fmt == "HEIF":
        pil.save(path, format="HEIF", quality=95)
    elif fmt == "JPEG":
        pil.save(path, format="JPEG", quality=95)
    elif fmt == "WEBP":
        pil.save(path, format="WEBP", quality=95)
    else:
        pil.save(path, format=fmt)
    arr = read_image(path)
    assert arr.shape == (H, W, 3)
    assert arr.dtype == np.uint8
    assert arr.flags.c_contiguous
    assert image_size(path) == (W, H)
    err = np.abs(arr.astype(int) - src.astype(int)).mean()
    if lossless:
        assert err == 0
    else:
        assert err < 12, f"{fmt}: mean error {err}"


def test_heic_with_orientation(tmp_path: Path) -> None:
    src = marked_rgb()
    path = tmp_path / "iphone.heic"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(src).save(path, format="HEIF", quality=95, exif=exif.tobytes())
    arr = read_image(path)
    expect = np.rot90(src, -1)  # orientation 6: rotate 90 degrees clockwise to view
    assert arr.shape == expect.shape
    assert np.abs(arr.astype(int) - expect.astype(int)).mean() < 6
    assert image_size(path) == (H, W)


# ---------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".webp"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_applied(tmp_path: Path, orientation: int, ext: str) -> None:
    stored = marked_rgb()  # red block at stored top-left
    path = tmp_path / f"rot{orientation}{ext}"
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 98} if ext in (".jpg", ".webp") else {}
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **kwargs)
    arr = read_image(path)
    expect = {
        1: stored,
        3: np.rot90(stored, 2),
        6: np.rot90(stored, -1),  # rotate 90 clockwise to view
        8: np.rot90(stored, 1),  # rotate 90 counter-clockwise to view
    }[orientation]
    assert arr.shape == expect.shape
    assert np.abs(arr.astype(int) - expect.astype(int)).mean() < 6
    w, h = image_size(path)
    assert (h, w) == arr.shape[:2]
    if orientation in (6, 8):
        assert (w, h) == (H, W)


# ---------------------------------------------------------------------------------- colour modes


def test_palette_without_transparency(tmp_path: Path) -> None:
    pil = Image.fromarray(marked_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    path = tmp_path / "pal.png"
    pil.save(path)
    arr = read_image(path)
    assert arr.shape == (H, W, 3)
    assert tuple(arr[0, 0]) == (255, 0, 0)
    assert tuple(arr[-1, -1]) == (128, 128, 128)


def test_palette_with_transparency_composited_on_white(tmp_path: Path) -> None:
    pil = Image.new("P", (W, H), 0)
    pil.putpalette([0, 0, 255] + [200, 0, 0] + [0] * (254 * 3))
    pil.paste(1, (0, 0, W // 2, H))
    pil.info["transparency"] = 0  # index 0 (blue) fully transparent
    path = tmp_path / "paltrans.png"
    pil.save(path, transparency=0)
    arr = read_image(path)
    assert tuple(arr[0, 0]) == (200, 0, 0)
    assert tuple(arr[0, -1]) == (255, 255, 255)


def test_grey(tmp_path: Path) -> None:
    grey = np.arange(W * H, dtype=np.uint32).reshape(H, W) % 256
    path = tmp_path / "grey.png"
    Image.fromarray(grey.astype(np.uint8), mode="L").save(path)
    arr = read_image(path)
    assert arr.shape == (H, W, 3)
    for c in range(3):
        assert np.array_equal(arr[:, :, c], grey.astype(np.uint8))


def test_grey_alpha_composited_on_white(tmp_path: Path) -> None:
    la = np.zeros((H, W, 2), np.uint8)
    la[:, :, 0] = 40
    la[:, : W // 2, 1] = 255  # left half opaque, right half transparent
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    arr = read_image(path)
    assert tuple(arr[0, 0]) == (40, 40, 40)
    assert tuple(arr[0, -1]) == (255, 255, 255)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[:, :, 0] = 200
    rgba[:, :, 3] = 0
    rgba[:, : W // 2, 3] = 255
    rgba[:, W // 2 : W // 2 + 4, 3] = 128  # half-transparent band
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    arr = read_image(path)
    assert tuple(arr[0, 0]) == (200, 0, 0)
    assert tuple(arr[0, -1]) == (255, 255, 255)
    mid = arr[0, W // 2 + 1]
    assert 220 <= mid[0] <= 235 and 120 <= mid[1] <= 135  # 50 % red over white


def test_cmyk(tmp_path: Path) -> None:
    src = marked_rgb()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(src).convert("CMYK").save(path, quality=98)
    arr = read_image(path)
    assert arr.shape == (H, W, 3)
    assert np.abs(arr.astype(int) - src.astype(int)).mean() < 10
    tif = tmp_path / "cmyk.tif"
    Image.fromarray(src).convert("CMYK").save(tif)
    assert np.abs(read_image(tif).astype(int) - src.astype(int)).max() <= 2


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    grey16 = np.linspace(0, 65535, W * H).reshape(H, W).round().astype(np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), grey16)
    arr = read_image(path)
    assert arr.shape == (H, W, 3)
    expect = np.round(grey16 / 257.0).astype(np.uint8)
    assert np.abs(arr[:, :, 0].astype(int) - expect.astype(int)).max() <= 1
    assert arr.max() == 255 and arr.min() == 0
    # a mid value is mid grey, not clipped to 255
    assert 120 <= arr[H // 2, W // 2, 0] <= 135


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgb_is_scaled_not_clipped(tmp_path: Path, ext: str) -> None:
    rgb16 = np.zeros((H, W, 3), np.uint16)
    rgb16[:, :, 0] = 65535  # full red
    rgb16[:, :, 1] = 32896  # half green (= 128 * 257)
    rgb16[:, :, 2] = np.linspace(0, 65535, W).round().astype(np.uint16)[None, :]
    path = tmp_path / f"c16{ext}"
    assert cv2.imwrite(str(path), rgb16[:, :, ::-1])  # cv2 writes BGR
    arr = read_image(path)
    assert arr.shape == (H, W, 3) and arr.dtype == np.uint8
    assert (arr[:, :, 0] == 255).all()
    assert (np.abs(arr[:, :, 1].astype(int) - 128) <= 1).all()
    assert arr[0, 0, 2] == 0 and arr[0, -1, 2] == 255
    assert np.all(np.diff(arr[0, :, 2].astype(int)) >= 0)
    assert image_size(path) == (W, H)


# ---------------------------------------------------------------------------------- errors


def _check_error(exc: pytest.ExceptionInfo[ImageReadError], path: Path) -> None:
    assert str(path) in str(exc.value)
    assert exc.value.path == path
    assert "\n" not in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageReadError, match="no such file") as exc:
        read_image(path)
    _check_error(exc, path)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.jpg"
    path.mkdir()
    with pytest.raises(ImageReadError, match="folder") as exc:
        read_image(path)
    _check_error(exc, path)


def test_zero_byte(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as exc:
        read_image(path)
    _check_error(exc, path)


def test_non_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageReadError, match="not a readable image") as exc:
        read_image(path)
    _check_error(exc, path)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".heic", ".tif"])
def test_truncated(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    full = tmp_path / f"full{ext}"
    Image.fromarray(noisy).save(full)
    data = full.read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    _check_error(exc, path)


def test_corrupt_body(tmp_path: Path) -> None:
    full = tmp_path / "ok.png"
    Image.fromarray(gradient_rgb()).save(full)
    data = bytearray(full.read_bytes())
    for i in range(60, len(data) - 20):
        data[i] ^= 0x5A
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    _check_error(exc, path)


def test_oversized_by_argument(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(gradient_rgb()).save(path)
    with pytest.raises(ImageTooLargeError, match="limit") as exc:
        read_image(path, max_pixels=W * H - 1)
    _check_error(exc, path)
    with pytest.raises(ImageTooLargeError):
        image_size(path, max_pixels=100)
    assert read_image(path, max_pixels=W * H).shape == (H, W, 3)


def test_oversized_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(gradient_rgb()).save(path)
    monkeypatch.setenv("OKRA_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="OKRA_MAX_PIXELS") as exc:
        read_image(path)
    _check_error(exc, path)
    monkeypatch.setenv("OKRA_MAX_PIXELS", "not-a-number")
    with pytest.raises(OkraError, match="OKRA_MAX_PIXELS"):
        read_image(path)
    monkeypatch.setenv("OKRA_MAX_PIXELS", str(W * H))
    assert read_image(path).shape == (H, W, 3)


def test_mask_errors_name_file(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError) as exc:
        read_mask(path)
    _check_error(exc, path)


# ---------------------------------------------------------------------------------- atomic writes


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exception_inside_atomic_output_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "masks" / "a.png"
    with pytest.raises(RuntimeError), atomic_output(target) as fh:
        fh.write(b"half a png")
        raise RuntimeError("crash in the middle")
    assert _leftovers(target.parent) == []


def test_exception_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    write_mask(target, np.ones((4, 4), bool))
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_output(target) as fh:
        fh.write(b"x")
        raise RuntimeError("boom")
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == ["a.png"]


def test_crash_at_rename_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "masks" / "b.png"

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        write_mask(target, np.zeros((8, 8), np.uint8))
    assert _leftovers(target.parent) == []


def test_keyboard_interrupt_inside_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.png"

    def interrupted(array: np.ndarray) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(imageio, "encode_png", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_mask(target, np.zeros((8, 8), np.uint8))
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------- masks and round trips


def test_mask_round_trip_and_format(tmp_path: Path) -> None:
    mask = np.zeros((H, W), bool)
    mask[5:20, 10:30] = True
    path = tmp_path / "m.png"
    write_mask(path, mask)
    with Image.open(path) as pil:
        assert pil.mode == "L" and pil.format == "PNG" and pil.size == (W, H)
    back = read_mask(path)
    assert back.dtype == np.uint8 and back.shape == (H, W)
    assert set(np.unique(back)) == {0, 255}
    assert np.array_equal(back == 255, mask)


@pytest.mark.parametrize(
    "values",
    [
        np.array([[0, 1]], np.uint8),
        np.array([[0, 255]], np.uint8),
        np.array([[0.2, 0.9]]),
        np.array([[0, 200.0]]),
    ],
)
def test_write_mask_accepts_common_encodings(tmp_path: Path, values: np.ndarray) -> None:
    path = tmp_path / "m.png"
    write_mask(path, values)
    assert read_mask(path).tolist() == [[0, 255]]


def test_write_mask_rejects_3d(tmp_path: Path) -> None:
    with pytest.raises(OkraError, match="2-D"):
        write_mask(tmp_path / "m.png", np.zeros((4, 4, 3), np.uint8))
    assert not (tmp_path / "m.png").exists()


def test_soft_round_trip(tmp_path: Path) -> None:
    prob = np.linspace(0, 1, W * H).reshape(H, W)
    path = tmp_path / "s.png"
    write_soft(path, prob)
    back = read_mask(path, binarize=False)
    assert np.abs(back.astype(int) - np.round(prob * 255)).max() == 0


def test_read_mask_from_rgb_and_16bit(tmp_path: Path) -> None:
    m = np.zeros((H, W), np.uint8)
    m[:, : W // 2] = 255
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.repeat(m[:, :, None], 3, 2)).save(rgb)
    assert np.array_equal(read_mask(rgb), m)
    m16 = tmp_path / "m16.png"
    cv2.imwrite(str(m16), m.astype(np.uint16) * 257)
    assert np.array_equal(read_mask(m16), m)


def test_write_image_formats(tmp_path: Path) -> None:
    src = gradient_rgb()
    for ext in (".png", ".jpg", ".webp"):
        write_image(tmp_path / f"o{ext}", src)
        back = read_image(tmp_path / f"o{ext}")
        assert back.shape == src.shape
        assert np.abs(back.astype(int) - src.astype(int)).mean() < 8
    with pytest.raises(OkraError, match="extension"):
        write_image(tmp_path / "o.gifx", src)


small_shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mask=arrays(np.bool_, small_shapes))
def test_property_mask_round_trip(tmp_path: Path, mask: np.ndarray) -> None:
    path = tmp_path / "p.png"
    write_mask(path, mask)
    back = read_mask(path)
    assert back.shape == mask.shape
    assert np.array_equal(back == 255, mask)
    assert set(np.unique(back)) <= {0, 255}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image=arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))))
def test_property_png_round_trip(tmp_path: Path, image: np.ndarray) -> None:
    path = tmp_path / "p.png"
    write_image(path, image)
    back = read_image(path)
    assert back.dtype == np.uint8
    assert np.array_equal(back, image)


# ---------------------------------------------------------------------------------- file walking


def test_iter_image_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.heic", ".hidden/d.jpg", "notes.txt", ".e.png"):
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.png", "b.JPG", "sub/c.heic"]
    flat = [p.name for p in iter_image_files([tmp_path], recursive=False)]
    assert flat == ["a.png", "b.JPG"]
    named = iter_image_files([tmp_path / "notes.txt", tmp_path / "missing.jpg", tmp_path / "a.png"])
    assert [p.name for p in named] == ["notes.txt", "missing.jpg", "a.png"]
    globbed = iter_image_files([str(tmp_path / "*.png")])
    assert [p.name for p in globbed] == ["a.png"]
    # a pattern that matches nothing is kept, so the caller reports it as missing
    assert iter_image_files([str(tmp_path / "*.gif")]) == [tmp_path / "*.gif"]
    (tmp_path / "clip.MP4").write_bytes(b"x")
    with_video = [p.name for p in iter_image_files([tmp_path], recursive=False, extensions={".png", ".mp4"})]
    assert with_video == ["a.png", "clip.MP4"]


def add_png_exif_orientation(path: Path, orientation: int) -> None:
    """Insert an eXIf chunk with the given orientation before IEND of an existing PNG."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    raw = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw  # PNG eXIf holds the bare TIFF block
    chunk = b"eXIf" + raw
    blob = struct.pack(">I", len(raw)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    data = path.read_bytes()
    iend = data.rfind(b"IEND") - 4
    path.write_bytes(data[:iend] + blob + data[iend:])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_rgb_with_exif_orientation(tmp_path: Path, orientation: int) -> None:
    stored = np.zeros((H, W, 3), np.uint16)
    stored[:, :, 1] = 20000
    stored[: H // 4, : W // 4] = (65535, 0, 0)  # red block at stored top-left
    path = tmp_path / "c16.png"
    assert cv2.imwrite(str(path), stored[:, :, ::-1])
    add_png_exif_orientation(path, orientation)
    arr = read_image(path)
    ref = Image.fromarray(np.round(stored / 257.0).astype(np.uint8))
    ref.getexif()[0x0112] = orientation
    expect = np.asarray(ImageOps.exif_transpose(ref))
    assert arr.shape == expect.shape
    assert np.abs(arr.astype(int) - expect.astype(int)).max() <= 1
    assert image_size(path) == (arr.shape[1], arr.shape[0])
