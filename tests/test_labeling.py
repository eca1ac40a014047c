"""The labelling loop: kill -9 and resume, shards, provenance, auto-prompting, quality control, review."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from _tiny_models import greenness_onnx_dir
from okrainsight.autoprompt import auto_prompt, okra_prior_mask, propose_from_mask
from okrainsight.dataset import DatasetLayout, append_manifest, read_manifest, save_prompts
from okrainsight.errors import ConfigError
from okrainsight.imageio import read_mask, write_image, write_mask
from okrainsight.labeling import (
    encode_mask_with_record,
    label_dataset,
    mask_digest,
    parse_shard,
    read_mask_record,
    shard_of,
)
from okrainsight.qc import REVIEW_FILE, check_label, review, review_rows
from okrainsight.synth import render_scene
from okrainsight.teachers import Teacher, TeacherResult, create_teacher

N_IMAGES = 30
SIZE = (256, 192)


def _make_dataset(root: Path, n: int, size: tuple[int, int] = SIZE, kind: str = "white") -> dict[str, Any]:
    """n rendered plain-background scenes, prompts.json with two axis points each; returns the scenes'
    exact masks by stem."""
    layout = DatasetLayout(root)
    layout.images_dir.mkdir(parents=True)
    prompts, truth = {}, {}
    for i in range(n):
        scene = render_scene(100 + i, size, kind=kind)
        stem = f"okra_{i:03d}"
        write_image(layout.images_dir / f"{stem}.jpg", scene.image, quality=95)
        axis = np.asarray(scene.pods[0]["axis_points"], float)
        k = len(axis)
        prompts[stem] = {"points": axis[[int(0.3 * k), int(0.7 * k)]].tolist(), "labels": [1, 1], "box": None}
        truth[stem] = scene.mask > 0
    save_prompts(layout.prompts_path, prompts)
    return truth


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labeltpl") / "data"
    _make_dataset(root, N_IMAGES)
    return root


@pytest.fixture()
def data(template: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(template, dst)
    return dst


def _okra(*args: str) -> list[str]:
    return [sys.executable, "-c", "from okrainsight.cli import main; main()", *args]


def _label_records(root: Path) -> list[dict[str, Any]]:
    return [r for r in read_manifest(DatasetLayout(root).manifest_path) if r.get("kind") == "label"]


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _assert_complete(root: Path) -> None:
    layout = DatasetLayout(root)
    stems = layout.stems()
    lines = layout.manifest_path.read_text(encoding="utf-8").splitlines()
    for line in lines:  # every line parses: no torn record left behind
        json.loads(line)
    recs = _label_records(root)
    by_stem: dict[str, int] = {}
    for r in recs:
        by_stem[r["stem"]] = by_stem.get(r["stem"], 0) + 1
    assert by_stem == {s: 1 for s in stems}, "exactly one label record per image"
    for r in recs:
        with Image.open(layout.mask_path(r["stem"])) as im:
            assert im.mode == "L"
            arr = np.asarray(im)
        assert set(np.unique(arr).tolist()) <= {0, 255}
        assert mask_digest(arr) == r["mask_sha256"]
        assert layout.soft_path(r["stem"]).exists()


def test_sigkill_mid_run_then_rerun_finishes_exactly_the_rest(data: Path) -> None:
    layout = DatasetLayout(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _okra("label", str(data), "--teacher", "grabcut", "--no-progress"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while _count_lines(layout.manifest_path) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = len(_label_records(data))
    assert 0 < done_before < N_IMAGES

    rerun = subprocess.run(
        _okra("label", str(data), "--teacher", "grabcut", "--no-progress"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    _assert_complete(data)
    # a third run has nothing left to do
    third = label_dataset(data, create_teacher("grabcut"), progress=False)
    assert third.labelled == [] and third.completed == [] and len(third.skipped) == N_IMAGES
    _assert_complete(data)


def test_crash_between_mask_and_record_is_completed_without_relabelling(data: Path) -> None:
    layout = DatasetLayout(data)
    stems = layout.stems()[:4]
    for p in layout.image_paths()[4:]:
        p.unlink()
    label_dataset(data, create_teacher("grabcut"), progress=False)
    lines = layout.manifest_path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    lost = json.loads(lines[-1])["stem"]
    # the crash hit after the mask was renamed into place but before the record was appended,
    # and an even earlier crash left a torn line
    layout.manifest_path.write_bytes(b"".join(lines[:-1]) + b'{"kind": "label", "stem": "okr')
    mask_before = layout.mask_path(lost).read_bytes()
    # a crash after writing a soft map but before the mask: that stem gets labelled again
    other = next(s for s in stems if s != lost)
    rest = [
        ln for ln in layout.manifest_path.read_bytes().splitlines(keepends=True) if other not in ln.decode()
    ]
    layout.manifest_path.write_bytes(b"".join(rest))
    layout.mask_path(other).unlink()

    report = label_dataset(data, create_teacher("grabcut"), progress=False)
    assert report.completed == [lost]
    assert report.labelled == [other]
    assert layout.mask_path(lost).read_bytes() == mask_before
    _assert_complete(data)


def test_foreign_masks_are_kept_unless_redo(data: Path) -> None:
    layout = DatasetLayout(data)
    for p in layout.image_paths()[3:]:
        p.unlink()
    stem = layout.stems()[0]
    hand = np.zeros((SIZE[1], SIZE[0]), bool)
    hand[10:20, 10:60] = True
    write_mask(layout.mask_path(stem), hand)
    report = label_dataset(data, create_teacher("grabcut"), progress=False)
    assert report.skipped == [stem] and len(report.labelled) == 2
    assert (read_mask(layout.mask_path(stem)) > 0).sum() == hand.sum()
    # a teacher mask edited by hand in a tool that keeps the PNG's text chunks is kept too
    edited = layout.stems()[1]
    rec, pixels = read_mask_record(layout.mask_path(edited))
    assert rec is not None
    pixels[:5, :5] = 255
    layout.mask_path(edited).write_bytes(encode_mask_with_record(pixels > 0, rec))
    third = label_dataset(data, create_teacher("grabcut"), progress=False)
    assert sorted(third.skipped) == layout.stems() and third.labelled == []
    assert (read_mask(layout.mask_path(edited))[:5, :5] == 255).all()
    again = label_dataset(data, create_teacher("grabcut"), redo=True, progress=False)
    assert sorted(again.labelled) == layout.stems()
    assert (read_mask(layout.mask_path(stem)) > 0).sum() != hand.sum()


def test_records_carry_provenance_and_labels_are_good(template: Path, tmp_path: Path) -> None:
    root = tmp_path / "d"
    truth = _make_dataset(root, 4)
    report = label_dataset(root, create_teacher("grabcut"), progress=False)
    assert report.ok and len(report.labelled) == 4
    recs = {r["stem"]: r for r in _label_records(root)}
    for stem, rec in recs.items():
        for key in ("teacher", "checkpoint_sha256", "prompts", "auto_prompted", "candidate_scores", "chosen",
                    "stability", "image_sha256", "time", "version", "qc_flags", "label_id"):  # fmt: skip
            assert key in rec, key
        assert rec["teacher"] == "grabcut" and rec["auto_prompted"] is False
        assert len(rec["prompts"]["points"]) == 2
        mask = read_mask(DatasetLayout(root).mask_path(stem)) > 0
        inter = (mask & truth[stem]).sum()
        assert inter / (mask | truth[stem]).sum() >= 0.85


@pytest.mark.parametrize("n", [2, 3])
def test_shards_partition_the_stems(data: Path, n: int) -> None:
    layout = DatasetLayout(data)
    for p in layout.image_paths()[12:]:
        p.unlink()
    stems = layout.stems()
    seen: list[str] = []
    for i in range(n):
        report = label_dataset(data, create_teacher("grabcut"), shard=(i, n), progress=False)
        assert sorted(report.labelled) == sorted(s for s in stems if shard_of(s, n) == i)
        seen += report.labelled
    assert sorted(seen) == stems
    _assert_complete(data)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_missing_prompts_fail_that_image_only_and_exit_nonzero(data: Path) -> None:
    layout = DatasetLayout(data)
    for p in layout.image_paths()[3:]:
        p.unlink()
    prompts = json.loads(layout.prompts_path.read_text())
    missing = layout.stems()[1]
    del prompts[missing]
    layout.prompts_path.write_text(json.dumps(prompts))
    res = subprocess.run(
        _okra("label", str(data), "--teacher", "grabcut", "--no-progress"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert missing in res.stderr and "--auto-prompt" in res.stderr
    assert sorted(r["stem"] for r in _label_records(data)) == sorted(set(layout.stems()) - {missing})


# ----------------------------------------------------------------------------------
# auto-prompting
# ----------------------------------------------------------------------------------


def test_auto_prompt_from_colour_prior_points_at_the_pod() -> None:
    for seed in range(3):
        scene = render_scene(200 + seed, SIZE, kind="white")
        truth = scene.mask > 0
        prompt = auto_prompt(scene.image)
        assert prompt is not None and prompt["auto"] is True and prompt["source"] == "prior"
        pts = np.asarray(prompt["points"])
        labels = np.asarray(prompt["labels"])
        xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        assert labels.sum() >= 2 and truth[yi[labels == 1], xi[labels == 1]].all()
        assert not truth[yi[labels == 0], xi[labels == 0]].any()
        assert mask_iou_simple(okra_prior_mask(scene.image), truth) > 0.5


def mask_iou_simple(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_propose_from_mask_puts_points_on_the_medial_axis() -> None:
    mask = np.zeros((120, 200), bool)
    cv2.ellipse(mask.view(np.uint8), (100, 60), (80, 12), 20, 0, 360, 1, -1)
    mask = mask.view(np.uint8).astype(bool)
    prompt = propose_from_mask(mask, points_per_pod=2, negatives=2)
    assert prompt is not None
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    for (x, y), lab in zip(prompt["points"], prompt["labels"], strict=True):
        if lab == 1:
            assert dist[int(y), int(x)] >= 0.7 * 12  # near the centreline of a 24 px wide pod
        else:
            assert not mask[int(y), int(x)]
    assert propose_from_mask(np.zeros((50, 50), bool)) is None


def test_auto_prompted_labels_are_recorded_as_such(data: Path) -> None:
    layout = DatasetLayout(data)
    for p in layout.image_paths()[3:]:
        p.unlink()
    layout.prompts_path.unlink()
    report = label_dataset(data, create_teacher("grabcut"), auto_prompt=True, progress=False)
    assert report.ok and len(report.labelled) == 3
    for rec in _label_records(data):
        assert rec["auto_prompted"] is True and rec["prompt_source"] == "prior"


# ----------------------------------------------------------------------------------
# quality control
# ----------------------------------------------------------------------------------


def _pod_mask(h: int = 192, w: int = 256) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (w // 2, h // 2), (80, 12), 25, 0, 360, 1, -1)
    return m.astype(bool)


def test_qc_passes_a_plausible_pod_and_flags_planted_bad_labels() -> None:
    good = _pod_mask()
    assert check_label(good, score=0.95, stability=0.95, candidates=[good, good]).flags == []

    tiny = np.zeros_like(good)
    tiny[90:94, 120:126] = True
    assert "too_small" in check_label(tiny).flags

    border = np.zeros_like(good)
    border[:, :6] = True
    assert "on_border" in check_label(border).flags

    round_blob = np.zeros((192, 256), np.uint8)
    cv2.circle(round_blob, (128, 96), 30, 1, -1)
    assert "not_elongated" in check_label(round_blob.astype(bool)).flags

    other = np.zeros_like(good)
    other[20:40, 20:200] = True
    assert "candidates_disagree" in check_label(good, candidates=[good, other, good]).flags
    assert "student_disagrees" in check_label(good, student_mask=other).flags
    assert "low_score" in check_label(good, score=0.3).flags
    assert "unstable" in check_label(good, stability=0.4).flags
    assert "too_large" in check_label(np.ones_like(good)).flags
    assert check_label(np.zeros_like(good)).flags == ["empty"]
    # more problems, more suspicion
    assert check_label(round_blob.astype(bool), score=0.2).suspicion > check_label(good, score=0.7).suspicion


class _PlantedTeacher(Teacher):
    """Returns a fixed bad shape for some stems and a good pod for the others."""

    name = "planted"

    def __init__(self, bad: dict[int, str]) -> None:
        self.bad = bad
        self.calls = 0

    def predict(self, image, points, point_labels, box=None):  # type: ignore[no-untyped-def]
        h, w = image.shape[:2]
        good = _pod_mask(h, w)
        kind = self.bad.get(self.calls, "good")
        self.calls += 1
        cands = [good, good, good]
        if kind == "tiny":
            mask = np.zeros_like(good)
            mask[5 + h // 2 : 8 + h // 2, w // 2 : w // 2 + 3] = True
        elif kind == "border":
            mask = np.zeros_like(good)
            mask[:, :8] = True
        elif kind == "round":
            m = np.zeros((h, w), np.uint8)
            cv2.circle(m, (w // 2, h // 2), 40, 1, -1)
            mask = m.astype(bool)
        elif kind == "disagree":
            mask = good
            other = np.zeros_like(good)
            other[: h // 3] = True
            cands = [good, other, good]
        else:
            mask = good
        return TeacherResult(mask, mask.astype(np.float32), 0.95, cands, [0.95, 0.9, 0.8], 0, 0.97)


def test_review_lists_flagged_labels_by_suspicion_and_accepting_clears_them(data: Path) -> None:
    layout = DatasetLayout(data)
    for p in layout.image_paths()[6:]:
        p.unlink()
    stems = layout.stems()
    planted = {0: "tiny", 2: "border", 3: "round", 5: "disagree"}
    report = label_dataset(data, _PlantedTeacher(planted), progress=False)
    assert sorted(report.flagged) == sorted(stems[i] for i in planted)
    rows, path = review(data)
    assert path == data / REVIEW_FILE and path.exists()
    assert sorted(r.stem for r in rows) == sorted(stems[i] for i in planted)
    assert [r.suspicion for r in rows] == sorted((r.suspicion for r in rows), reverse=True)
    text = path.read_text().splitlines()
    assert text[0].startswith("stem,suspicion,flags")
    assert len(text) == 1 + len(planted)

    # accept one on the command line, one by ticking the accepted column in review.csv
    res = subprocess.run(_okra("label", str(data), "--accept", stems[0]), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = (data / REVIEW_FILE).read_text().splitlines()
    ticked = [ln if not ln.startswith(stems[3] + ",") else ln[: ln.rfind(",")] + ",yes" for ln in lines]
    (data / REVIEW_FILE).write_text("\n".join(ticked) + "\n")
    # correct one by hand: a new mask replaces the teacher's
    write_mask(layout.mask_path(stems[2]), _pod_mask())
    res = subprocess.run(_okra("label", str(data), "--review"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    left = [r.stem for r in review_rows(data)]
    assert left == [stems[5]]
    assert stems[5] in res.stdout and "1 labels to review" in res.stdout
    latest = {r["stem"]: r for r in _label_records(data)}
    assert latest[stems[0]]["accepted"] is True and latest[stems[3]]["accepted"] is True
    assert latest[stems[5]]["accepted"] is False


def test_manifest_torn_line_from_other_writer_is_repaired(data: Path) -> None:
    layout = DatasetLayout(data)
    for p in layout.image_paths()[2:]:
        p.unlink()
    append_manifest(layout.manifest_path, {"kind": "note", "stem": "x"})
    with open(layout.manifest_path, "ab") as fh:
        fh.write(b'{"kind": "lab')
    label_dataset(data, create_teacher("grabcut"), progress=False)
    _assert_complete(data)


def test_student_model_drives_auto_prompts_and_disagreement_check(tmp_path: Path) -> None:
    """--auto-prompt with --student: points come from the student's mask (recorded as such), and a
    label the student disagrees with is flagged."""
    model = greenness_onnx_dir(tmp_path / "model", (128, 96))

    root = tmp_path / "data"
    layout = DatasetLayout(root)
    layout.images_dir.mkdir(parents=True)
    for i in range(3):
        img = np.full((96, 128, 3), 235, np.uint8)
        cv2.ellipse(img, (64, 48), (45, 8), 20 * i, 0, 360, (60, 170, 50), -1)
        write_image(layout.images_dir / f"p{i}.png", img)
    res = subprocess.run(
        _okra(
            "label",
            str(root),
            "--teacher",
            "grabcut",
            "--auto-prompt",
            "--student",
            str(model),
            "--no-progress",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    recs = _label_records(root)
    assert len(recs) == 3
    for rec in recs:
        assert rec["auto_prompted"] is True and rec["prompt_source"] == "student"
        assert rec["qc_measures"]["student_iou"] > 0.8 and "student_disagrees" not in rec["qc_flags"]
