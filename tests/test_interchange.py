"""LabelMe import, COCO export/import round trip, YOLO segmentation export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from okrainsight.dataset import DatasetLayout, read_manifest
from okrainsight.imageio import read_mask, write_image, write_mask
from okrainsight.interchange import export_yolo, import_coco, import_labelme, labelme_to_mask
from okrainsight.synth import render_scene


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _okra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from okrainsight.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """Five rendered scenes of mixed kinds with exact masks (several pods in some), one negative."""
    root = tmp_path / "data"
    layout = DatasetLayout(root)
    layout.images_dir.mkdir(parents=True)
    for i, kind in enumerate(["white", "pile", "plate", "white", "negative"]):
        scene = render_scene(300 + i, (160, 120), kind=kind)
        write_image(layout.images_dir / f"s{i}.png", scene.image)
        write_mask(layout.mask_path(f"s{i}"), scene.mask)
        (root / "instances").mkdir(exist_ok=True)
        Image.fromarray(scene.instances.astype(np.uint16)).save(root / "instances" / f"s{i}.png")
    return root


def _instances(root: Path, stem: str) -> np.ndarray:
    with Image.open(root / "instances" / f"{stem}.png") as im:
        return np.asarray(im).astype(np.int64)


def test_coco_round_trip_is_exact(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "coco.json"
    res = _okra("interop", "to-coco", str(data), "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["categories"][0]["name"] == "okra"
    assert len(doc["images"]) == 5
    assert all(isinstance(a["segmentation"]["counts"], str) for a in doc["annotations"])
    n_regions = sum(
        cv2.connectedComponents((read_mask(DatasetLayout(data).mask_path(f"s{i}")) > 0).astype(np.uint8))[0]
        - 1
        for i in range(5)
    )
    assert len(doc["annotations"]) >= min(n_regions, 1)

    # import into a fresh dataset (images copied from --images)
    fresh = tmp_path / "fresh"
    res = _okra("interop", "from-coco", str(out), "--data", str(fresh), "--images", str(data / "images"))
    assert res.returncode == 0, res.stderr
    for i in range(5):
        a = read_mask(DatasetLayout(data).mask_path(f"s{i}")) > 0
        b = read_mask(DatasetLayout(fresh).mask_path(f"s{i}")) > 0
        if a.any():
            assert _iou(a, b) >= 0.99
        else:
            assert not b.any()
    kinds = {r["source"] for r in read_manifest(DatasetLayout(fresh).manifest_path)}
    assert kinds == {"coco"}


def test_coco_import_accepts_polygons_and_keeps_existing_masks(data: Path, tmp_path: Path) -> None:
    doc = {
        "images": [{"id": 1, "file_name": "s0.png", "width": 160, "height": 120}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[10, 10, 60, 10, 60, 30, 10, 30]],
            },
        ],  # fmt: skip
        "categories": [{"id": 1, "name": "okra"}],
    }
    src = tmp_path / "poly.json"
    src.write_text(json.dumps(doc))
    before = read_mask(DatasetLayout(data).mask_path("s0"))
    assert import_coco(src, data).written == []  # mask exists, kept
    assert np.array_equal(read_mask(DatasetLayout(data).mask_path("s0")), before)
    report = import_coco(src, data, overwrite=True)
    assert report.written == ["s0"]
    m = read_mask(DatasetLayout(data).mask_path("s0")) > 0
    assert m[20, 30] and not m[50, 100] and abs(int(m.sum()) - 50 * 20) < 80


def _labelme_doc(mask: np.ndarray, instances: np.ndarray, image_name: str) -> dict:
    """One polygon per visible pod (as a person draws them in LabelMe)."""
    shapes = []
    for i in np.unique(instances[mask]):
        part = ((instances == i) & mask).astype(np.uint8)
        contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        shapes += [
            {"label": "okra", "points": c.reshape(-1, 2).astype(float).tolist(), "shape_type": "polygon"}
            for c in contours
            if len(c) >= 3
        ]
    shapes.append({"label": "table", "points": [[0, 0], [5, 0], [5, 5]], "shape_type": "polygon"})
    h, w = mask.shape
    return {"version": "5.4.1", "shapes": shapes, "imagePath": image_name, "imageHeight": h, "imageWidth": w}


def test_labelme_import_matches_the_drawn_polygons(data: Path, tmp_path: Path) -> None:
    src = tmp_path / "labelme"
    src.mkdir()
    truth = {}
    for i in range(4):
        stem = f"s{i}"
        shutil.copy(data / "images" / f"{stem}.png", src / f"{stem}.png")
        truth[stem] = read_mask(DatasetLayout(data).mask_path(stem)) > 0
        doc = _labelme_doc(truth[stem], _instances(data, stem), f"{stem}.png")
        (src / f"{stem}.json").write_text(json.dumps(doc))
    dest = tmp_path / "imported"
    res = _okra("interop", "from-labelme", str(src), "--data", str(dest), "--label", "okra")
    assert res.returncode == 0, res.stderr
    layout = DatasetLayout(dest)
    assert sorted(layout.stems()) == sorted(truth)
    for stem, t in truth.items():
        got = read_mask(layout.mask_path(stem)) > 0
        assert _iou(got, t) >= 0.95, stem  # polygons through boundary pixels: within a pixel
        assert not got[1, 1] or t[1, 1]  # the 'table' shape was filtered out
    # without a label filter the 'table' triangle counts too
    doc = json.loads((src / "s0.json").read_text())
    assert labelme_to_mask(doc, (160, 120))[1, 2]
    assert not labelme_to_mask(doc, (160, 120), {"okra"})[1, 2] or truth["s0"][1, 2]


def test_labelme_size_mismatch_is_reported(data: Path, tmp_path: Path) -> None:
    src = tmp_path / "lm"
    src.mkdir()
    shutil.copy(data / "images" / "s0.png", src / "s0.png")
    doc = {"shapes": [], "imagePath": "s0.png", "imageHeight": 10, "imageWidth": 10}
    (src / "s0.json").write_text(json.dumps(doc))
    report = import_labelme(src, tmp_path / "out")
    assert report.failed and "10x10" in report.failed[0][1]


def test_yolo_export_is_valid_and_matches_masks(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    report = export_yolo(data, out)
    assert report.ok and len(report.written) == 5
    assert "names:" in (out / "data.yaml").read_text() and "0: okra" in (out / "data.yaml").read_text()
    for i in range(5):
        stem = f"s{i}"
        assert (out / "images" / f"{stem}.png").exists()
        truth = read_mask(DatasetLayout(data).mask_path(stem)) > 0
        h, w = truth.shape
        canvas = np.zeros((h, w), np.uint8)
        lines = (out / "labels" / f"{stem}.txt").read_text().splitlines()
        for line in lines:
            parts = line.split()
            assert parts[0] == "0"
            coords = np.array([float(v) for v in parts[1:]])
            assert len(coords) >= 6 and len(coords) % 2 == 0
            assert coords.min() >= 0.0 and coords.max() <= 1.0
            poly = coords.reshape(-1, 2) * [w, h] - 0.5
            cv2.fillPoly(canvas, [np.round(poly).astype(np.int32)], 1)
        if truth.any():
            assert _iou(canvas > 0, truth) >= 0.9, stem
        else:
            assert lines == []
    res = _okra("interop", "to-yolo", str(data), "--out", str(tmp_path / "y2"))
    assert res.returncode == 0 and "5 label files" in res.stdout


def test_coco_export_of_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    res = _okra("interop", "to-coco", str(tmp_path / "nope"), "--out", str(tmp_path / "x.json"))
    assert res.returncode == 2 and "okra: error:" in res.stderr and "does not exist" in res.stderr
