"""The whole distillation loop on one machine: ``okra pipeline CONFIG [--out DIR] [--force]``.

Stages, in order (each writes its outputs under ``OUT/`` and a marker
``OUT/stages/<stage>.json`` holding its result; a stage whose marker and output exist is
skipped, so a rerun after a crash continues where it stopped; ``force`` redoes all):

1. ``data``: render ``synth.n`` scenes with :func:`okrainsight.synth.render_dataset` into
   ``OUT/data`` and move the renderer's exact masks to ``OUT/data/masks_gt/`` (ground
   truth, never shown to the teacher or the student); or copy a folder of real images
   (``images: DIR``, optional ``ground_truth: DIR`` of ``<stem>.png`` masks and
   ``prompts: FILE``).
2. ``label``: label every image with the teacher (``grabcut``, ``sam`` + ``checkpoint``,
   or ``student`` + ``checkpoint``) via :func:`okrainsight.labeling.label_dataset`, from
   the renderer's prompts (two positive clicks on the largest pod, as in the original;
   its box only with ``use_box: true``), a prompts file, or auto-prompting
   (``prompts: auto``). Images the teacher could not label are moved to
   ``OUT/data/unlabelled/`` and counted in the report.
3. ``check``: :func:`okrainsight.dataset.check_dataset`; defects that would break
   training (missing or unreadable masks, size mismatches) stop the pipeline.
4. ``split``: :func:`okrainsight.dataset.split_dataset` (grouped, seeded).
5. ``train``: :func:`okrainsight.training.train` into ``OUT/model`` (a model folder);
   an interrupted run resumes from its ``last.ckpt``.
6. ``evaluate``: :func:`okrainsight.evaluate.evaluate` on ``eval.split``: fidelity
   (student versus teacher IoU), the teacher's IoU against ground truth and the
   student's IoU against ground truth (where ground truth exists).
7. ``export``: :func:`okrainsight.export.export_onnx` into ``OUT/model/model.onnx``,
   with its parity check against PyTorch.

Finally ``OUT/pipeline_report.json`` and ``OUT/pipeline_report.md`` are written.
Relative paths in the config are taken from the current directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okrainsight.dataset import FATAL_DEFECT_KINDS, DatasetLayout, load_prompts, save_prompts
from okrainsight.errors import ConfigError, DatasetError
from okrainsight.imageio import atomic_write_text, iter_image_files

log = logging.getLogger(__name__)

STAGES = ("data", "label", "check", "split", "train", "evaluate", "export")
#: Folders under OUT that the pipeline owns (``force`` removes exactly these).
OWNED = ("data", "model", "eval", "stages")
GT_DIR = "masks_gt"
UNLABELLED_DIR = "unlabelled"
TEACHERS = ("grabcut", "sam", "student")


@dataclass
class SynthSpec:
    """``synth:`` section: ``n`` images of ``size`` (width, height) pixels from base ``seed``."""

    n: int = 48
    size: tuple[int, int] = (256, 192)
    kinds: list[str] | None = None
    negative_fraction: float = 0.0
    workers: int | None = None


@dataclass
class PipelineConfig:
    """Every pipeline option; the YAML file has the same keys (``synth``, ``train``, ``eval``, ``export``
    are mappings). Exactly one of ``synth`` and ``images`` is set."""

    out: str = "runs/pipeline"
    seed: int = 0
    synth: SynthSpec | None = None
    images: str | None = None
    ground_truth: str | None = None
    prompts: str = "dataset"
    use_box: bool = False
    teacher: str = "grabcut"
    checkpoint: str | None = None
    model_type: str = "vit_h"
    device: str = "auto"
    teacher_options: dict[str, Any] = field(default_factory=dict)
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    group_regex: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    eval_tolerance: int = 2
    export_onnx: bool = True
    opset: int = 17
    progress: bool = True
    source: str = "config"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


@dataclass
class StageResult:
    """One stage: ``status`` is ``ran`` or ``skipped``; ``result`` what it measured or wrote."""

    name: str
    status: str
    seconds: float
    result: dict[str, Any]


@dataclass
class PipelineReport:
    """Outcome of :func:`run_pipeline`.

    ``metrics`` (IoU values in [0, 1], None where not measurable): ``fidelity_iou``
    (student vs teacher), ``teacher_gt_iou`` (teacher vs ground truth), ``student_gt_iou``
    (student vs ground truth), ``onnx_parity_iou``; plus image counts.
    """

    out: Path
    config: dict[str, Any]
    stages: list[StageResult]
    metrics: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "config": self.config,
            "stages": [dataclasses.asdict(s) for s in self.stages],
            "metrics": self.metrics,
            "seconds": round(self.seconds, 2),
        }


# ----------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------

_TOP_KEYS = {
    "out",
    "seed",
    "synth",
    "images",
    "ground_truth",
    "prompts",
    "use_box",
    "teacher",
    "checkpoint",
    "model_type",
    "device",
    "teacher_options",
    "split",
    "group_regex",
    "train",
    "eval",
    "export",
    "progress",
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _int(src: str, key: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{src}: {key} must be an integer >= {minimum}, got {v!r}")
    return v


def _str_or_none(src: str, key: str, v: Any) -> str | None:
    if v is not None and not isinstance(v, str | os.PathLike):
        raise ConfigError(f"{src}: {key} must be a path (text), got {v!r}")
    return None if v is None else str(v)


def _mapping(src: str, key: str, v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{src}: {key} must be a mapping, got {v!r}")
    return dict(v)


def _bool(src: str, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{src}: {key} must be true or false, got {v!r}")
    return v


def _parse_size(src: str, v: Any) -> tuple[int, int]:
    try:
        if isinstance(v, str):
            w, _, h = v.lower().partition("x")
            size = (int(w), int(h))
        else:
            w, h = v
            size = (int(w), int(h))
    except (TypeError, ValueError):
        raise ConfigError(f"{src}: synth.size must be WIDTHxHEIGHT or [width, height], got {v!r}") from None
    if min(size) < 32:
        raise ConfigError(f"{src}: synth.size must be at least 32x32, got {v!r}")
    return size


def parse_config(raw: dict[str, Any], src: str = "config") -> PipelineConfig:
    """Validate a config mapping into a :class:`PipelineConfig`.

    Raises:
        ConfigError: one line naming the source, the key and the problem.
    """
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{src}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_KEYS))}"
        )
    cfg = PipelineConfig(source=src)
    if "out" in raw:
        cfg.out = str(_str_or_none(src, "out", raw["out"]) or cfg.out)
    cfg.seed = _int(src, "seed", raw.get("seed", 0), 0)
    cfg.images = _str_or_none(src, "images", raw.get("images"))
    if raw.get("synth") is not None and cfg.images is not None:
        raise ConfigError(f"{src}: give either synth or images, not both")
    if cfg.images is None:
        s = _mapping(src, "synth", raw.get("synth"))
        bad = sorted(set(s) - {f.name for f in dataclasses.fields(SynthSpec)})
        if bad:
            raise ConfigError(f"{src}: unknown key(s) synth.{', synth.'.join(bad)}")
        spec = SynthSpec()
        spec.n = _int(src, "synth.n", s.get("n", spec.n), 1)
        spec.size = _parse_size(src, s.get("size", spec.size))
        kinds = s.get("kinds")
        if kinds is not None:
            from okrainsight.synth import KINDS

            if isinstance(kinds, str):
                kinds = [kinds]
            if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
                raise ConfigError(
                    f"{src}: synth.kinds must list scene kinds from {', '.join(KINDS)}; got {kinds!r}"
                )
            spec.kinds = [str(k) for k in kinds]
        nf = s.get("negative_fraction", spec.negative_fraction)
        if isinstance(nf, bool) or not isinstance(nf, int | float) or not 0 <= nf <= 1:
            raise ConfigError(f"{src}: synth.negative_fraction must be a number in [0, 1], got {nf!r}")
        spec.negative_fraction = float(nf)
        if s.get("workers") is not None:
            spec.workers = _int(src, "synth.workers", s["workers"], 1)
        cfg.synth = spec
    cfg.ground_truth = _str_or_none(src, "ground_truth", raw.get("ground_truth"))
    prompts = raw.get("prompts", "dataset")
    if not isinstance(prompts, str) or not prompts:
        raise ConfigError(f"{src}: prompts must be 'dataset', 'auto' or a prompts.json path, got {prompts!r}")
    cfg.prompts = prompts
    cfg.use_box = _bool(src, "use_box", raw.get("use_box", False))
    cfg.teacher = str(raw.get("teacher", "grabcut"))
    if cfg.teacher not in TEACHERS:
        raise ConfigError(f"{src}: teacher must be one of {', '.join(TEACHERS)}, got {cfg.teacher!r}")
    cfg.checkpoint = _str_or_none(src, "checkpoint", raw.get("checkpoint"))
    if cfg.teacher in ("sam", "student") and cfg.checkpoint is None:
        what = "a SAM checkpoint file" if cfg.teacher == "sam" else "a trained model folder"
        raise ConfigError(f"{src}: checkpoint is required with teacher {cfg.teacher} ({what})")
    if cfg.checkpoint is not None:
        cfg.checkpoint = str(Path(cfg.checkpoint).expanduser())
        if not Path(cfg.checkpoint).exists():
            raise ConfigError(f"{src}: checkpoint {cfg.checkpoint} does not exist")
    cfg.model_type = str(raw.get("model_type", "vit_h"))
    cfg.device = str(raw.get("device", "auto"))
    cfg.teacher_options = _mapping(src, "teacher_options", raw.get("teacher_options"))
    split = raw.get("split", list(cfg.split))
    try:
        fr = tuple(float(v) for v in split)
    except (TypeError, ValueError):
        fr = ()
    if len(fr) != 3 or min(fr) < 0 or fr[0] <= 0 or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"{src}: split must be [train, val, test] fractions summing to 1, got {split!r}")
    cfg.split = fr  # type: ignore[assignment]
    cfg.group_regex = _str_or_none(src, "group_regex", raw.get("group_regex"))
    cfg.train = _mapping(src, "train", raw.get("train"))
    ev = _mapping(src, "eval", raw.get("eval"))
    bad = sorted(set(ev) - {"split", "tolerance"})
    if bad:
        raise ConfigError(f"{src}: unknown key(s) eval.{', eval.'.join(bad)}")
    cfg.eval_split = str(ev.get("split", "test"))
    if cfg.eval_split not in ("train", "val", "test", "all"):
        raise ConfigError(f"{src}: eval.split must be train, val, test or all, got {cfg.eval_split!r}")
    cfg.eval_tolerance = _int(src, "eval.tolerance", ev.get("tolerance", 2), 0)
    ex = _mapping(src, "export", raw.get("export"))
    bad = sorted(set(ex) - {"onnx", "opset"})
    if bad:
        raise ConfigError(f"{src}: unknown key(s) export.{', export.'.join(bad)}")
    cfg.export_onnx = _bool(src, "export.onnx", ex.get("onnx", True))
    cfg.opset = _int(src, "export.opset", ex.get("opset", 17), 17)
    cfg.progress = _bool(src, "progress", raw.get("progress", True))
    # The training section is checked now, so a typo fails before minutes of labelling.
    _train_config(cfg, Path(cfg.out))
    return cfg


def load_pipeline_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """Read a YAML pipeline config (``None``: built-in defaults), deep-merge ``overrides``, validate."""
    from okrainsight.training import load_config_file

    raw = load_config_file(path) if path is not None else {}
    if overrides:
        raw = _deep_merge(raw, overrides)
    return parse_config(raw, str(path) if path is not None else "pipeline config")


def _train_config(cfg: PipelineConfig, out: Path) -> Any:
    from okrainsight.training import make_config

    values = dict(cfg.train)
    base = values.pop("config", None)
    values.update(data=str(out / "data"), out=str(out / "model"))
    values.setdefault("progress", cfg.progress)
    values.setdefault("seed", cfg.seed)
    values.setdefault("name", "okra-pipeline")
    try:
        return make_config(base, values)
    except ConfigError as exc:
        raise ConfigError(f"{cfg.source}: train: {exc}") from exc


# ----------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------


def _move_gt_masks(layout: DatasetLayout) -> int:
    """Move renderer masks (no embedded teacher record) from ``masks/`` to ``masks_gt/``."""
    from okrainsight.labeling import read_mask_record

    gt = layout.root / GT_DIR
    gt.mkdir(exist_ok=True)
    moved = 0
    if layout.masks_dir.is_dir():
        for p in sorted(layout.masks_dir.glob("*.png")):
            record, _ = read_mask_record(p)
            if record is None:
                os.replace(p, gt / p.name)
                moved += 1
    return moved


def _stage_data(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    data = out / "data"
    layout = DatasetLayout(data)
    if cfg.synth is not None:
        from okrainsight.synth import render_dataset

        s = cfg.synth
        render_dataset(
            data,
            s.n,
            cfg.seed,
            s.size,
            workers=s.workers,
            kinds=s.kinds,
            negative_fraction=s.negative_fraction,
            progress=cfg.progress,
        )
        _move_gt_masks(layout)
        return {
            "source": "synth",
            "images": len(layout.image_paths()),
            "ground_truth": len(list((data / GT_DIR).glob("*.png"))),
            "size": list(s.size),
            "kinds": s.kinds,
        }
    src = Path(str(cfg.images))
    if not src.is_dir():
        raise DatasetError(f"{src}: images folder does not exist")
    layout.images_dir.mkdir(parents=True, exist_ok=True)
    paths = iter_image_files([src], recursive=False)
    if not paths:
        raise DatasetError(f"{src}: no images found")
    for p in paths:
        dest = layout.images_dir / p.name
        if not dest.exists():
            shutil.copy2(p, dest)
    n_gt = 0
    if cfg.ground_truth is not None:
        gsrc = Path(cfg.ground_truth)
        if not gsrc.is_dir():
            raise DatasetError(f"{gsrc}: ground-truth folder does not exist")
        (data / GT_DIR).mkdir(exist_ok=True)
        stems = {p.stem for p in paths}
        for m in sorted(gsrc.glob("*.png")):
            if m.stem in stems:
                shutil.copy2(m, data / GT_DIR / m.name)
                n_gt += 1
    return {"source": str(src), "images": len(paths), "ground_truth": n_gt}


def _prompt_table(cfg: PipelineConfig, layout: DatasetLayout) -> tuple[dict[str, dict[str, Any]], bool]:
    if cfg.prompts == "auto":
        return {}, True
    if cfg.prompts == "dataset":
        if not layout.prompts_path.is_file():
            raise ConfigError(
                f"{cfg.source}: prompts: {layout.prompts_path} does not exist; "
                "give a prompts.json path or prompts: auto"
            )
        table = load_prompts(layout.prompts_path)
    else:
        table = load_prompts(cfg.prompts)
    if not cfg.use_box:
        table = {k: {**v, "box": None} for k, v in table.items()}
    return table, False


def _make_teacher(cfg: PipelineConfig) -> Any:
    from okrainsight.teachers import create_teacher

    kwargs: dict[str, Any] = dict(cfg.teacher_options)
    if cfg.teacher == "sam":
        kwargs.update(model_type=cfg.model_type, checkpoint=cfg.checkpoint, device=cfg.device)
    elif cfg.teacher == "student":
        kwargs.update(model=cfg.checkpoint)
    return create_teacher(cfg.teacher, **kwargs)


def _stage_label(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    from okrainsight.labeling import label_dataset

    layout = DatasetLayout(out / "data").require()
    table, auto = _prompt_table(cfg, layout)
    if not auto:  # the prompts actually used, for the record
        save_prompts(out / "prompts_used.json", table)
    teacher = _make_teacher(cfg)
    report = label_dataset(layout.root, teacher, prompts=table, auto_prompt=auto, progress=cfg.progress)
    aside = layout.root / UNLABELLED_DIR
    for stem, message in report.failed:
        log.warning("label: %s", message)
        aside.mkdir(exist_ok=True)
        for p in layout.images_dir.glob(f"{stem}.*"):
            os.replace(p, aside / p.name)
    if not layout.image_paths():
        raise DatasetError(f"{layout.root}: the teacher labelled no image ({len(report.failed)} failed)")
    return {
        "teacher": cfg.teacher,
        "prompts": "auto" if auto else cfg.prompts,
        "labelled": len(report.labelled),
        "kept": len(report.skipped) + len(report.completed),
        "failed": len(report.failed),
        "failures": [m for _, m in report.failed][:20],
        "flagged": len(report.flagged),
    }


def _stage_check(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    from okrainsight.dataset import check_dataset

    defects = check_dataset(out / "data", repair=True)
    kinds: dict[str, int] = {}
    for d in defects:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    fatal = [d for d in defects if d.kind in FATAL_DEFECT_KINDS]
    if fatal:
        raise DatasetError(f"dataset check: {len(fatal)} defect(s), first: {fatal[0].message}")
    return {"defects": len(defects), "by_kind": kinds, "messages": [d.message for d in defects][:20]}


def _stage_split(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    from okrainsight.dataset import split_dataset

    # Every rendered scene is a different okra (its own group); after labelling the manifest's latest
    # records are the teacher's, so the renderer's grouping is restated here.
    regex = cfg.group_regex or (r"^(.+)$" if cfg.synth is not None else None)
    res = split_dataset(out / "data", cfg.split, seed=cfg.seed, group_regex=regex)
    sizes = {name: len(stems) for name, stems in res.splits.items()}
    for name in ("train", "val") if cfg.split[1] > 0 else ("train",):
        if not sizes.get(name):
            raise ConfigError(
                f"{cfg.source}: split: the {name} split is empty ({len(set(res.groups.values()))} group(s) "
                f"among {len(res.groups)} images); set group_regex (e.g. '^(.+)$': every image its own okra)"
            )
    return sizes


def _stage_train(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    from okrainsight.checkpoint import load_card
    from okrainsight.training import train

    tcfg = _train_config(cfg, out)
    if (Path(tcfg.out) / "checkpoints" / "last.ckpt").is_file():
        tcfg.resume = True
    run = train(tcfg)
    card = load_card(run)
    return {"model": str(run), "arch": card.arch, "input_size": list(card.input_size), **card.metrics}


def _stage_evaluate(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    from okrainsight.evaluate import evaluate

    res = evaluate(
        out / "model",
        out / "data",
        split=cfg.eval_split,
        tolerance=cfg.eval_tolerance,
        out=out / "eval",
        gallery=4,
        latency_runs=5,
        progress=cfg.progress,
    )
    iou = res.summary.get("iou")
    fidelity = res.fidelity.get("iou") if res.fidelity else (iou if res.reference == "teacher" else None)
    return {
        "split": cfg.eval_split,
        "images": int(res.summary.get("images", 0)),
        "reference": res.reference,
        "fidelity_iou": fidelity,
        "teacher_gt_iou": res.teacher_accuracy.get("iou") if res.teacher_accuracy else None,
        "student_gt_iou": iou if res.reference == "ground_truth" else None,
        "summary": res.summary,
        "errors": res.errors,
        "latency_ms_cpu_median": res.model.get("latency_ms_cpu_median"),
        "parameters": res.model.get("parameters"),
    }


def _stage_export(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    if not cfg.export_onnx:
        return {"onnx": None}
    from okrainsight.checkpoint import load_checkpoint
    from okrainsight.export import export_onnx

    model, card = load_checkpoint(out / "model")
    res = export_onnx(model, card, out / "model" / "model.onnx", opset=cfg.opset)
    return res.to_dict()


_RUNNERS: dict[str, Callable[[PipelineConfig, Path], dict[str, Any]]] = {
    "data": _stage_data,
    "label": _stage_label,
    "check": _stage_check,
    "split": _stage_split,
    "train": _stage_train,
    "evaluate": _stage_evaluate,
    "export": _stage_export,
}

_OUTPUTS: dict[str, Callable[[Path], bool]] = {
    "data": lambda o: (o / "data" / "images").is_dir(),
    "label": lambda o: (o / "data" / "masks").is_dir(),
    "check": lambda o: True,
    "split": lambda o: (o / "data" / "splits").is_dir(),
    "train": lambda o: (o / "model" / "card.json").is_file(),
    "evaluate": lambda o: (o / "eval" / "summary.json").is_file(),
    "export": lambda o: True,  # model.onnx is checked in _done (it is absent when export.onnx is false)
}


def _done(out: Path, stage: str) -> dict[str, Any] | None:
    marker = out / "stages" / f"{stage}.json"
    if not marker.is_file() or not _OUTPUTS[stage](out):
        return None
    try:
        result = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if (
        stage == "export"
        and result.get("onnx", "") is not None
        and not (out / "model" / "model.onnx").is_file()
    ):
        return None
    return result


def _metric(v: Any) -> float | None:
    return None if v is None or v != v else round(float(v), 4)


def run_pipeline(
    config: PipelineConfig,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    echo: Callable[[str], None] | None = None,
) -> PipelineReport:
    """Run the stages (module doc) into ``out`` (default ``config.out``); return the report.

    Args:
        config: from :func:`load_pipeline_config`.
        out: output folder, overriding ``config.out``.
        force: remove the pipeline's earlier outputs (``data``, ``model``, ``eval``,
            ``stages`` under ``out``; nothing else) and redo every stage.
        echo: called with one line per stage start and end (progress); None logs them.

    Raises:
        OkraError: a stage failed; completed stages stay done for the next run.
    """
    say = echo or log.info
    root = Path(out if out is not None else config.out)
    if force:
        for name in OWNED:
            if (root / name).exists():
                shutil.rmtree(root / name)
    (root / "stages").mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    results: list[StageResult] = []
    for i, stage in enumerate(STAGES, 1):
        prev = _done(root, stage)
        if prev is not None:
            say(f"[{i}/{len(STAGES)}] {stage}: done before, skipped")
            results.append(StageResult(stage, "skipped", 0.0, prev))
            continue
        say(f"[{i}/{len(STAGES)}] {stage} ...")
        t0 = time.perf_counter()
        result = _RUNNERS[stage](config, root)
        seconds = time.perf_counter() - t0
        atomic_write_text(root / "stages" / f"{stage}.json", json.dumps(result, indent=2, default=str) + "\n")
        results.append(StageResult(stage, "ran", round(seconds, 2), result))
        say(f"[{i}/{len(STAGES)}] {stage}: done in {seconds:.1f} s")
    by = {s.name: s.result for s in results}
    ev = by["evaluate"]
    parity = (by["export"].get("parity") or {}).get("iou")
    metrics = {
        "fidelity_iou": _metric(ev.get("fidelity_iou")),
        "teacher_gt_iou": _metric(ev.get("teacher_gt_iou")),
        "student_gt_iou": _metric(ev.get("student_gt_iou")),
        "onnx_parity_iou": _metric(parity),
        "eval_split": ev.get("split"),
        "eval_images": ev.get("images"),
        "images": by["data"].get("images"),
        "labelled": by["label"].get("labelled", 0) + by["label"].get("kept", 0),
        "label_failed": by["label"].get("failed"),
        "flagged": by["label"].get("flagged"),
        "val_iou": _metric(by["train"].get("val_iou")),
    }
    report = PipelineReport(root, config.to_dict(), results, metrics, time.perf_counter() - t_all)
    atomic_write_text(
        root / "pipeline_report.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n"
    )
    atomic_write_text(root / "pipeline_report.md", markdown_summary(report))
    return report


def markdown_summary(report: PipelineReport) -> str:
    """A short Markdown page: the headline IoUs and one line per stage."""
    m = report.metrics

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    cfg = report.config
    lines = [
        "# OkraInsight pipeline",
        "",
        f"Teacher `{cfg.get('teacher')}`, data {'synth' if cfg.get('synth') else cfg.get('images')}, "
        f"{m.get('images')} images ({m.get('labelled')} labelled, {m.get('label_failed')} failed, "
        f"{m.get('flagged')} flagged for review); evaluated on split `{m.get('eval_split')}` "
        f"({m.get('eval_images')} images).",
        "",
        "| measure | IoU |",
        "|---|---|",
        f"| fidelity: student vs teacher | {f(m.get('fidelity_iou'))} |",
        f"| teacher vs ground truth | {f(m.get('teacher_gt_iou'))} |",
        f"| student vs ground truth | {f(m.get('student_gt_iou'))} |",
        f"| ONNX vs PyTorch (parity) | {f(m.get('onnx_parity_iou'))} |",
        "",
        "| stage | status | seconds |",
        "|---|---|---|",
        *[f"| {s.name} | {s.status} | {s.seconds:.1f} |" for s in report.stages],
        "",
        f"Total {report.seconds:.1f} s. Model folder: `{report.out / 'model'}`.",
        "",
    ]
    return "\n".join(lines)


__all__ = [
    "STAGES",
    "PipelineConfig",
    "PipelineReport",
    "StageResult",
    "SynthSpec",
    "load_pipeline_config",
    "markdown_summary",
    "parse_config",
    "run_pipeline",
]
