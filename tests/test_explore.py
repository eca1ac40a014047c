"""Tests of okra explore: every image and defect listed, small lazy thumbnails, escaping, offline page."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from okrainsight.cli import app
from okrainsight.dataset import DatasetLayout, append_manifest, check_dataset, save_prompts
from okrainsight.errors import ConfigError, DatasetError
from okrainsight.explore import build_explorer, count_pods
from okrainsight.imageio import write_mask, write_soft

ODD = "a <b>&\"quote' é"


def add(
    root: Path, stem: str, size: tuple[int, int] = (300, 200), *, mask: bool = True, pods: int = 2
) -> None:
    w, h = size
    layout = DatasetLayout(root)
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 200, np.uint8)
    Image.fromarray(img).save(layout.images_dir / f"{stem}.jpg", quality=90)
    if mask:
        m = np.zeros((h, w), bool)
        for k in range(pods):
            m[10 + 40 * k : 30 + 40 * k, 20 : w - 20] = True
        write_mask(layout.mask_path(stem), m)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    add(root, "okra_1_a", pods=1)
    add(root, "okra_1_b", pods=3)
    add(root, ODD, size=(120, 90))
    write_soft(DatasetLayout(root).soft_path("okra_1_a"), np.full((200, 300), 0.7))
    # planted defects
    add(root, "nomask", mask=False)
    write_mask(root / "masks" / "orphan.png", np.zeros((20, 20), bool))
    write_mask(root / "masks" / "okra_1_b.png", np.zeros((50, 50), bool))  # size mismatch
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    save_prompts(
        root / "prompts.json",
        {"okra_1_a": {"points": [[100, 20], [5, 5]], "labels": [1, 0], "box": [10, 5, 280, 40]}},
    )
    append_manifest(root / "manifest.jsonl", {"stem": "okra_1_a", "kind": "pile", "pods": 1, "seed": 7})
    return root


def test_lists_every_image_and_defect(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "report.html"
    report = build_explorer(dataset, out, progress=False)
    page = out.read_text(encoding="utf-8")
    images = DatasetLayout(dataset).image_paths()
    assert report.n_images == len(images) == 5
    for p in images:
        assert f"<h2>{html.escape(p.name)}</h2>" in page
    defects = check_dataset(dataset)
    assert report.n_defects == len(defects) >= 4
    assert {d.kind for d in defects} >= {"missing-mask", "orphan-mask", "size-mismatch", "unreadable-image"}
    for d in defects:
        assert html.escape(d.message) in page
    assert page.count('class="card bad"') == 3  # nomask, broken, okra_1_b
    card = re.search(r'<article class="card bad" id="[^"]+" data-key="okra_1_b[^"]*size-mismatch', page)
    assert card is not None
    # manifest attributes and computed stats
    assert "<td>kind</td><td>pile</td>" in page and "<td>seed</td><td>7</td>" in page
    assert "<td>size</td><td>300x200</td>" in page


def test_thumbnails_small_lazy_and_local(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    report = build_explorer(dataset, out, progress=False)
    assert report.files_dir == tmp_path / "report_files"
    page = out.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 4 + 3 + 1  # 4 readable photos, 3 overlays, 1 soft map
    for src in srcs:
        assert src.startswith("report_files/")
        path = tmp_path / src
        assert path.exists()
        with Image.open(path) as im:
            assert im.format == "JPEG" and max(im.size) <= 256
        assert path.stat().st_size < 30_000
    assert page.count('loading="lazy"') == len(srcs)
    assert "http://" not in page and "https://" not in page  # no CDN, works offline
    assert "<script src" not in page and "<link" not in page


def test_overlay_marks_the_mask(tmp_path: Path) -> None:
    root = tmp_path / "d"
    add(root, "one", size=(100, 100), pods=1)
    build_explorer(root, tmp_path / "r.html", progress=False)
    overlay = [p for p in (tmp_path / "r_files").iterdir() if p.name.startswith("o_")]
    thumb = [p for p in (tmp_path / "r_files").iterdir() if p.name.startswith("t_")]
    o = np.asarray(Image.open(overlay[0]).convert("RGB")).astype(int)
    t = np.asarray(Image.open(thumb[0]).convert("RGB")).astype(int)
    inside, outside = (20, 50), (80, 50)  # (y, x) in and out of the 10..30 x 20..80 band
    assert abs(o[inside] - t[inside]).sum() > 60  # tinted
    assert abs(o[outside] - t[outside]).sum() < 15  # untouched


def test_html_escapes_odd_names(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_explorer(dataset, out, progress=False)
    page = out.read_text(encoding="utf-8")
    assert ODD not in page
    assert "<b>&" not in page
    assert html.escape(f"{ODD}.jpg") in page


def test_filter_box_and_count_of_pods(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_explorer(dataset, out, progress=False)
    page = out.read_text(encoding="utf-8")
    assert '<input id="q" type="search"' in page and "addEventListener('input'" in page
    assert 'data-key="nomask nomask.jpg missing-mask"' in page
    assert "<td>pods (mask)</td><td>1</td>" in page


def test_count_pods() -> None:
    m = np.zeros((300, 300), np.uint8)  # floor: 1e-4 * 90,000 = 9 pixels
    assert count_pods(m) == 0
    m[10:20, 10:90] = 255
    m[40:50, 10:90] = 255
    m[70:80, 10:90] = 255
    m[290:292, 290:292] = 255  # a 4-pixel speck below the size floor
    assert count_pods(m) == 3
    m[290:293, 290:293] = 255  # 9 pixels: counted
    assert count_pods(m) == 4
    m[290:293, 290:293] = 0
    m[20:40, 50] = 255  # a bridge joins two pods
    assert count_pods(m) == 2


def test_rerun_replaces_stale_thumbnails(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_explorer(dataset, out, progress=False)
    before = set((tmp_path / "report_files").iterdir())
    (dataset / "images" / "okra_1_b.jpg").unlink()
    build_explorer(dataset, out, progress=False)
    after = set((tmp_path / "report_files").iterdir())
    assert after < before
    assert "okra_1_b.jpg" not in out.read_text(encoding="utf-8")


def test_errors(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(DatasetError):
        build_explorer(tmp_path / "missing", tmp_path / "r.html", progress=False)
    with pytest.raises(ConfigError, match="thumbnail"):
        build_explorer(dataset, tmp_path / "r.html", thumb_size=4, progress=False)
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        build_explorer(dataset, tmp_path / "dir.html", progress=False)


def test_cli(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli" / "report.html"
    result = CliRunner().invoke(app, ["explore", str(dataset), "--out", str(out), "--thumb-size", "64"])
    assert result.exit_code == 0, result.output
    assert "5 images" in result.output
    for p in (tmp_path / "cli" / "report_files").iterdir():
        with Image.open(p) as im:
            assert max(im.size) <= 64
    help_text = CliRunner().invoke(app, ["explore", "--help"]).output
    assert "Example:" in help_text


def test_large_manifest_values_are_summarised(tmp_path: Path) -> None:
    root = tmp_path / "d"
    add(root, "x", size=(64, 48))
    append_manifest(
        root / "manifest.jsonl", {"stem": "x", "long": "y" * 500, "nested": {"a": list(range(100))}}
    )
    build_explorer(root, tmp_path / "r.html", progress=False)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "y" * 81 not in page and "<td>long</td>" in page
    assert "nested" not in page
    assert json.dumps(list(range(100))) not in page


def test_renderer_pod_list_shown_as_count(tmp_path: Path) -> None:
    root = tmp_path / "d"
    add(root, "synth_0", size=(64, 48))
    pods = [{"age": 0.1 * i, "length": 40 + i, "tender": True, "angle": 12.5} for i in range(3)]
    append_manifest(
        root / "manifest.jsonl", {"stem": "synth_0", "source": "synth", "kind": "white", "pods": pods}
    )
    build_explorer(root, tmp_path / "r.html", progress=False)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<td>pods (count)</td><td>3</td>" in page and "<td>kind</td><td>white</td>" in page
