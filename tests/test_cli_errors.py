"""Each kind of bad image gives one clear line on stderr and no traceback at the command line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

OKRA = Path(sys.executable).with_name("okra")


def _png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


BAD_FILES = {
    "corrupt.jpg": (b"\xff\xd8\xff\xe0" + b"\x00garbage" * 40, "corrupt"),
    "truncated.png": (_png_bytes()[:60], "truncat"),
    "zero.jpg": (b"", "empty"),
    "notes.png": (b"this is a text file, not a picture\n" * 4, "not a readable image"),
    "huge.png": (_png_bytes((400, 300)), "above the limit"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_image_is_one_line_without_traceback(name: str, tmp_path: Path) -> None:
    data, problem = BAD_FILES[name]
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / name).write_bytes(data)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "good.png")
    env = {**os.environ, "COLUMNS": "300", "OKRA_MAX_PIXELS": "50000"}
    proc = subprocess.run(
        [str(OKRA), "convert", str(folder), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert name in lines[0] and problem in lines[0].lower(), lines[0]
    assert (tmp_path / "out" / "good.jpg").is_file()


def test_python_dash_m_runs_the_same_command_line(tmp_path: Path) -> None:
    """``python -m okrainsight`` (no ``okra`` script, e.g. a GPU machine with PYTHONPATH=src) is ``okra``."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.png").write_bytes(b"not a picture\n" * 4)
    env = {**os.environ, "COLUMNS": "300"}
    run = subprocess.run(
        [sys.executable, "-m", "okrainsight", "segment", str(folder), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode != 0
    assert "notes.png" in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "out" / "results.json").is_file()
    version = subprocess.run(
        [sys.executable, "-m", "okrainsight", "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.strip()
