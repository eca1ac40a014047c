"""The okra pipeline: end to end at CI size, resumability, --force, real-image folders, config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from okrainsight.cli import app
from okrainsight.dataset import DatasetLayout, read_manifest
from okrainsight.errors import ConfigError
from okrainsight.imageio import read_mask
from okrainsight.pipeline import STAGES, load_pipeline_config, run_pipeline

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = ROOT / "configs" / "pipeline-ci.yaml"
QUIET = {"progress": False}


def _iou_keys_in_unit_range(metrics: dict) -> None:
    for key in ("fidelity_iou", "teacher_gt_iou", "student_gt_iou", "onnx_parity_iou"):
        v = metrics[key]
        assert isinstance(v, float), key
        assert 0.0 <= v <= 1.0, (key, v)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    cfg = load_pipeline_config(CI_CONFIG, QUIET)
    lines: list[str] = []
    report = run_pipeline(cfg, out=out, echo=lines.append)
    return out, report, lines


def test_ci_config_runs_end_to_end(ci_run) -> None:
    out, report, lines = ci_run
    assert [s.name for s in report.stages] == list(STAGES)
    assert all(s.status == "ran" for s in report.stages)
    assert any("train" in ln for ln in lines)  # stages print progress
    _iou_keys_in_unit_range(report.metrics)
    # the renderer's masks are ground truth, kept away from the teacher's masks
    data = DatasetLayout(out / "data")
    stems = data.stems()
    assert len(stems) == 24
    assert sorted(p.stem for p in (out / "data" / "masks_gt").glob("*.png")) == sorted(stems)
    labels = [r for r in read_manifest(data.manifest_path) if r.get("kind") == "label"]
    assert {r["stem"] for r in labels} == set(stems)
    assert {r["teacher"] for r in labels} == {"grabcut"}
    assert all(len(r["prompts"]["points"]) == 2 and r["prompts"]["box"] is None for r in labels)
    # grabcut on plain white renders is a good teacher; its masks differ from the exact ones
    assert report.metrics["teacher_gt_iou"] >= 0.7
    gt = read_mask(out / "data" / "masks_gt" / f"{stems[0]}.png")
    assert read_mask(data.mask_path(stems[0])).shape == gt.shape
    # outputs: a model folder with ONNX, eval outputs, the reports
    assert (out / "model" / "card.json").is_file() and (out / "model" / "model.onnx").is_file()
    assert (out / "eval" / "summary.json").is_file()
    doc = json.loads((out / "pipeline_report.json").read_text())
    assert doc["metrics"] == report.metrics
    md = (out / "pipeline_report.md").read_text()
    assert "student vs teacher" in md and f"{report.metrics['fidelity_iou']:.3f}" in md


def test_rerun_skips_completed_stages(ci_run) -> None:
    out, first, _ = ci_run
    cfg = load_pipeline_config(CI_CONFIG, QUIET)
    again = run_pipeline(cfg, out=out)
    assert all(s.status == "skipped" for s in again.stages)
    assert again.metrics == first.metrics
    # a crash after training: the last stages' markers are gone, only they run again
    for stage in ("evaluate", "export"):
        (out / "stages" / f"{stage}.json").unlink()
    (out / "model" / "model.onnx").unlink()
    resumed = run_pipeline(cfg, out=out)
    status = {s.name: s.status for s in resumed.stages}
    assert status == {**{s: "skipped" for s in STAGES[:5]}, "evaluate": "ran", "export": "ran"}
    assert (out / "model" / "model.onnx").is_file()
    assert resumed.metrics["fidelity_iou"] == first.metrics["fidelity_iou"]


def test_images_folder_with_auto_prompts(ci_run, tmp_path: Path) -> None:
    src_out, _, _ = ci_run
    photos, gt = tmp_path / "photos", tmp_path / "gt"
    photos.mkdir()
    gt.mkdir()
    for stem in DatasetLayout(src_out / "data").stems()[:12]:
        shutil.copy(src_out / "data" / "images" / f"{stem}.jpg", photos / f"{stem}.jpg")
        shutil.copy(src_out / "data" / "masks_gt" / f"{stem}.png", gt / f"{stem}.png")
    raw = load_pipeline_config(CI_CONFIG).to_dict()["train"]
    cfg = load_pipeline_config(
        None,
        {
            "images": str(photos),
            "ground_truth": str(gt),
            "prompts": "auto",
            "split": [0.5, 0.25, 0.25],
            "group_regex": "^(.+)$",  # every photo shows a different okra
            "train": raw,
            "eval": {"split": "all"},
            "export": {"onnx": False},
            "progress": False,
        },
    )
    report = run_pipeline(cfg, out=tmp_path / "run")
    assert report.metrics["labelled"] >= 1
    assert report.metrics["labelled"] + report.metrics["label_failed"] == 12
    labels = [
        r for r in read_manifest(tmp_path / "run" / "data" / "manifest.jsonl") if r.get("kind") == "label"
    ]
    assert labels and all(r["auto_prompted"] for r in labels)
    for key in ("fidelity_iou", "teacher_gt_iou", "student_gt_iou"):
        assert 0.0 <= report.metrics[key] <= 1.0
    assert report.metrics["onnx_parity_iou"] is None


def test_cli_force_redoes_every_stage(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    text = CI_CONFIG.read_text().replace("n: 24", "n: 8")
    cfg.write_text(text)
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(app, ["pipeline", str(cfg), "--out", str(out), "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "fidelity" in first.output
    stamp = (out / "stages" / "data.json").stat().st_mtime_ns
    second = runner.invoke(app, ["pipeline", str(cfg), "--out", str(out), "--no-progress", "--force"])
    assert second.exit_code == 0, second.output
    doc = json.loads((out / "pipeline_report.json").read_text())
    assert [s["status"] for s in doc["stages"]] == ["ran"] * len(STAGES)
    assert (out / "stages" / "data.json").stat().st_mtime_ns != stamp


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["pipeline", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "okra pipeline" in result.output


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"synth": {"n": -3}}, "synth.n"),
        ({"synth": {"size": "big"}}, "synth.size"),
        ({"synth": {"kinds": ["moon"]}}, "synth.kinds"),
        ({"teacher": "oracle"}, "teacher"),
        ({"teacher": "sam"}, "checkpoint"),
        ({"teacher": "sam", "checkpoint": "/nonexistent/sam_vit_h.pth"}, "checkpoint"),
        ({"prompts": 3}, "prompts"),
        ({"export": {"onnx": "yes"}}, "export.onnx"),
        ({"split": [0.5, 0.5]}, "split"),
        ({"eval": {"split": "holdout"}}, "eval.split"),
        ({"train": {"epochs": 0}}, "epochs"),
        ({"train": {"learning_rate": 1.0}}, "learning_rate"),
        ({"colour": "green"}, "colour"),
        ({"images": "photos"}, "either synth or images"),
    ],
)
def test_bad_config_value_names_the_key(tmp_path: Path, override: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(CI_CONFIG, override)
    message = str(info.value)
    assert key in message
    assert "\n" not in message
    assert str(CI_CONFIG) in message


def test_cli_bad_config_is_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("synth:\n  n: zero\n")
    result = CliRunner().invoke(app, ["pipeline", str(cfg), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) and "synth.n" in str(result.exception)
    assert not (tmp_path / "o" / "data").exists()
