"""Tests of okra convert: orientation, folders, per-file errors, collisions, skip/overwrite, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from okrainsight.cli import app, main
from okrainsight.convert import convert_images, plan_outputs
from okrainsight.errors import ConfigError
from okrainsight.imageio import read_image

W, H = 40, 24
OKRA = Path(sys.executable).with_name("okra")


def marked(w: int = W, h: int = H) -> np.ndarray:
    arr = np.full((h, w, 3), 120, np.uint8)
    arr[: h // 3, : w // 3] = (250, 10, 10)
    return arr


def save(path: Path, arr: np.ndarray | None = None, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(marked() if arr is None else arr)
    kwargs: dict[str, object] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    if path.suffix.lower() in (".jpg", ".heic", ".webp"):
        kwargs["quality"] = 95
    pil.save(path, **kwargs)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    save(src / "rot6.jpg", orientation=6)
    save(src / "phone.heic", orientation=8)
    save(src / "day2" / "plain.png")
    save(src / "day2" / "deep" / "t.tif")
    (src / "day2" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "empty.webp").write_bytes(b"")
    (src / "notes.txt").write_text("ignored: not an image extension")
    return src


def test_convert_folder_keeps_structure_and_orientation(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = convert_images([photos], out, 90, progress=False)
    rel = sorted(dst.relative_to(out).as_posix() for _, dst in report.converted)
    assert rel == ["day2/deep/t.jpg", "day2/plain.jpg", "phone.jpg", "rot6.jpg"]
    assert sorted(f.source.name for f in report.failed) == ["broken.jpg", "empty.webp"]
    for failure in report.failed:
        assert str(failure.source) in failure.message
        assert "\n" not in failure.message
    assert not report.ok
    rot6 = read_image(out / "rot6.jpg")
    assert rot6.shape == (W, H, 3)  # rotated upright
    assert rot6[0, -1, 0] > 200 and rot6[0, -1, 1] < 60  # red block moved to the top-right
    with Image.open(out / "rot6.jpg") as pil:
        assert pil.format == "JPEG"
        assert pil.getexif().get(0x0112, 1) == 1  # no stale orientation tag
    phone = read_image(out / "phone.jpg")
    assert phone.shape == (W, H, 3)
    assert phone[-1, 0, 0] > 200  # orientation 8: top-left goes to bottom-left
    assert read_image(out / "day2" / "plain.jpg").shape == (H, W, 3)
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_no_recursive(photos: Path, tmp_path: Path) -> None:
    report = convert_images([photos], tmp_path / "out", recursive=False, progress=False)
    assert sorted(d.name for _, d in report.converted) == ["phone.jpg", "rot6.jpg"]
    assert [f.source.name for f in report.failed] == ["empty.webp"]


def test_quality_changes_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    src = save(tmp_path / "noise.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    convert_images([src], tmp_path / "lo", 20, progress=False)
    convert_images([src], tmp_path / "hi", 98, progress=False)
    assert (tmp_path / "lo" / "noise.jpg").stat().st_size < (tmp_path / "hi" / "noise.jpg").stat().st_size
    with pytest.raises(ConfigError, match="quality"):
        convert_images([src], tmp_path / "x", 0, progress=False)


def test_skip_existing_then_overwrite(tmp_path: Path) -> None:
    src = save(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    first = convert_images([tmp_path / "in"], out, progress=False)
    assert len(first.converted) == 1
    (out / "a.jpg").write_bytes(b"stale")
    second = convert_images([tmp_path / "in"], out, progress=False)
    assert second.converted == [] and second.skipped == [(src, out / "a.jpg")]
    assert (out / "a.jpg").read_bytes() == b"stale"
    third = convert_images([tmp_path / "in"], out, overwrite=True, progress=False)
    assert len(third.converted) == 1
    assert read_image(out / "a.jpg").shape == (H, W, 3)


def test_name_collisions_are_deterministic(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    save(folder / "a.heic")
    save(folder / "a.jpg")
    save(folder / "A.png")
    save(folder / "a_jpg.png")  # its natural name a_jpg.jpg is taken first
    save(folder / "b.png")
    plan = plan_outputs([folder], tmp_path / "out")
    names = {src.name: dst.name for src, dst in plan}
    assert names["b.png"] == "b.jpg"
    assert names["a_jpg.png"] == "a_jpg.jpg"
    assert names["a.heic"] == "a_heic.jpg"
    assert names["A.png"] == "A_png.jpg"
    assert names["a.jpg"] == "a_jpg_2.jpg"
    assert len({d.casefold() for d in names.values()}) == len(names)
    # the same regardless of the order inputs are named in
    again = plan_outputs(sorted(folder.iterdir(), reverse=True), tmp_path / "out")
    assert {s.name: d.name for s, d in again} == names
    report = convert_images([folder], tmp_path / "out", progress=False)
    assert report.ok and len(report.converted) == 5


def test_two_input_folders_with_same_names(tmp_path: Path) -> None:
    save(tmp_path / "x" / "a.jpg")
    save(tmp_path / "y" / "a.jpg")
    report = convert_images([tmp_path / "x", tmp_path / "y"], tmp_path / "out", progress=False)
    assert sorted(d.name for _, d in report.converted) == ["a_jpg.jpg", "a_jpg_2.jpg"]


def test_output_inside_input_is_not_reconverted(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    save(folder / "a.png")
    convert_images([folder], folder / "jpeg", progress=False)
    again = convert_images([folder], folder / "jpeg", progress=False)
    assert [s.name for s, _ in again.skipped] == ["a.png"]
    assert again.converted == [] and again.failed == []


def test_missing_input_and_empty_folder(tmp_path: Path) -> None:
    save(tmp_path / "ok.png")
    report = convert_images([tmp_path / "ok.png", tmp_path / "gone.heic"], tmp_path / "out", progress=False)
    assert [s.name for s, _ in report.converted] == ["ok.png"]
    assert len(report.failed) == 1 and "gone.heic" in report.failed[0].message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        convert_images([tmp_path / "empty"], tmp_path / "out2", progress=False)


def test_oversized_reported_per_file(tmp_path: Path) -> None:
    save(tmp_path / "in" / "big.png", np.zeros((64, 64, 3), np.uint8))
    save(tmp_path / "in" / "small.png", np.zeros((8, 8, 3), np.uint8))
    report = convert_images([tmp_path / "in"], tmp_path / "out", max_pixels=1000, progress=False)
    assert [s.name for s, _ in report.converted] == ["small.png"]
    assert "big.png" in report.failed[0].message and "limit" in report.failed[0].message


# ---------------------------------------------------------------------------------- CLI


def test_cli_runner(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["convert", str(photos), "--out", str(out), "--quality", "80"])
    assert result.exit_code == 1
    assert "4 converted" in result.output and "2 failed" in result.output
    assert (out / "day2" / "deep" / "t.jpg").exists()
    ok = CliRunner().invoke(app, ["convert", str(photos / "rot6.jpg"), "--out", str(tmp_path / "o2")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o2" / "rot6.jpg").exists()


def test_cli_help_has_example() -> None:
    result = CliRunner().invoke(app, ["convert", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "okra convert" in result.output


def test_main_bad_file_one_line_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    monkeypatch.setattr(sys, "argv", ["okra", "convert", str(tmp_path / "in"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1
    err = capsys.readouterr().err
    bad_lines = [line for line in err.splitlines() if "bad.png" in line]
    assert len(bad_lines) == 1 and bad_lines[0].startswith("okra: convert: ")
    assert "Traceback" not in err
    assert (tmp_path / "o" / "good.jpg").exists()


def test_subprocess_console_script(tmp_path: Path) -> None:
    assert OKRA.exists(), f"console script {OKRA} missing: pip install -e ."
    save(tmp_path / "in" / "good.heic", orientation=6)
    (tmp_path / "in" / "zero.jpg").write_bytes(b"")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [str(OKRA), "convert", str(tmp_path / "in"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"okra: convert: {tmp_path / 'in' / 'zero.jpg'}: file is empty (0 bytes)"]
    assert "1 converted" in proc.stdout
    assert read_image(tmp_path / "o" / "good.jpg").shape == (W, H, 3)
    # a bad option value is one line too, exit code 2
    proc = subprocess.run(
        [str(OKRA), "convert", str(tmp_path / "in"), "--out", str(tmp_path / "in" / "good.heic")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("okra: error:") and "Traceback" not in proc.stderr
