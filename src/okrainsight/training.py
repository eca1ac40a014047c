"""Distillation training of a student on PyTorch Lightning: ``okra train DATA --arch NAME --out RUN``.

A *run folder* ``RUN/`` holds::

    config.yaml                 the resolved training configuration
    card.json, model.safetensors   the best weights (by validation IoU) as a model folder,
                                so ``RUN`` can be given wherever a model is expected
    checkpoints/last.ckpt       Lightning checkpoint of the latest epoch (``--resume`` reads it)
    checkpoints/best-*.ckpt     Lightning checkpoint of the best epoch
    metrics.csv                 per-step/epoch metrics of all sessions (the CSV logs joined)
    loss.png, iou.png           training curves
    logs/csv/version_<n>/, logs/tb/version_<n>/   CSV and TensorBoard logs, one per session

Data fingerprint (``card.data_fingerprint``): ``sha256:`` of the sorted lines
``stem<TAB>image name<TAB>image bytes<TAB>sha256(mask)<TAB>sha256(soft) or -`` of every
training item (negatives: ``neg:<name><TAB>bytes``), so two runs trained on the same
files share it while any relabelled mask changes it.

Teacher provenance (``card.teacher``) summarises the ``teacher`` (and ``source``)
fields of the latest ``manifest.jsonl`` record of every training stem.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

from okrainsight.checkpoint import IMAGENET_MEAN, IMAGENET_STD, ModelCard, save_checkpoint
from okrainsight.dataset import DatasetLayout, latest_manifest_by_stem
from okrainsight.errors import ConfigError, DatasetError
from okrainsight.imageio import atomic_write_text, sha256_file
from okrainsight.losses import LossConfig, SegmentationLoss
from okrainsight.students import create_student
from okrainsight.torchdata import AugmentConfig, OkraSegmentationDataset, read_split_stems

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw", "adam")
AUGMENT_ON = ("loader", "device")


@dataclass
class TrainConfig:
    """Every training option. YAML keys have the same names; CLI flags override them.

    ``optimizer``: ``sgd`` (momentum, polynomial decay ``(1 - step/total)**poly_power``,
    the original DeepLab recipe with lr 0.02) or ``adamw``/``adam`` (cosine decay to 0,
    the original U-2-Net used Adam 1e-3). ``precision`` None picks ``bf16-mixed`` (or
    ``16-mixed``) on a GPU and ``32-true`` on CPU. ``devices``, ``accelerator``,
    ``strategy`` and ``num_nodes`` go to ``lightning.Trainer`` unchanged (e.g.
    ``devices: 4, strategy: ddp`` trains on four GPUs).

    Fine-tuning (``init_from``) can keep parts of the donor fixed: ``freeze`` lists
    parameter-name prefixes of the student (e.g. ``["backbone"]`` trains only the head;
    ``okra train --help`` explains), and ``freeze_batchnorm`` keeps every batch-norm layer
    in inference mode, so its running mean/variance and its scale/shift stay the donor's.

    ``augment_on``: ``loader`` augments each image in the data-loading workers (torchvision
    ``transforms.v2``); ``device`` has the workers only decode images at ``canvas_size``
    (width, height) and augments whole batches where the model trains
    (:mod:`okrainsight.batch_augment`), which keeps a GPU busy with few CPU cores.
    """

    data: str = ""
    out: str = ""
    arch: str = "okra_lraspp_small"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (256, 256)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    threshold: float = 0.5
    epochs: int = 50
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    poly_power: float = 0.9
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    soft_weight: float = 0.5
    negative_image_weight: float = 1.0
    false_positive_weight: float = 1.0
    augment: dict[str, Any] = field(default_factory=dict)
    augment_on: str = "loader"
    canvas_size: tuple[int, int] = (384, 288)
    negatives: list[str] = field(default_factory=list)
    use_soft: bool = True
    workers: int = 2
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str | None = None
    resume: bool = False
    init_from: str | None = None
    freeze: list[str] = field(default_factory=list)
    freeze_batchnorm: bool = False
    max_minutes: float | None = None
    patience: int = 10
    seed: int = 0
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    log_every_n_steps: int = 10
    progress: bool = True
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("input_size", "mean", "std", "canvas_size"):
            d[key] = list(d[key])
        return d


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict; :class:`ConfigError` when unreadable or not a mapping."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: config file does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a config file must be a mapping of option names to values")
    return raw


def make_config(
    file: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from defaults, then ``file`` (YAML), then non-None ``overrides``."""
    values: dict[str, Any] = {}
    src = str(file) if file else "overrides"
    if file:
        values.update(load_config_file(file))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{src}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        cfg = TrainConfig(**values)
        cfg.input_size = _size(cfg.input_size)
        cfg.canvas_size = _size(cfg.canvas_size)
        cfg.mean = tuple(float(v) for v in cfg.mean)  # type: ignore[assignment]
        cfg.std = tuple(float(v) for v in cfg.std)  # type: ignore[assignment]
        cfg.negatives = _str_list(cfg.negatives)
        cfg.freeze = _str_list(cfg.freeze)
        AugmentConfig(**cfg.augment)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{src}: invalid option value ({exc})") from exc
    _validate(cfg, src)
    return cfg


def _str_list(value: Any) -> list[str]:
    """A YAML/CLI value that may be one string or a list of them, as a list of strings."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        text = value.lower()
        w, _, h = text.partition("x")
        return (int(w), int(h or w))
    if isinstance(value, int):
        return (value, value)
    w, h = value
    return (int(w), int(h))


def _validate(cfg: TrainConfig, src: str) -> None:
    problems = []
    if cfg.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        problems.append("epochs and batch_size must be at least 1")
    if cfg.lr <= 0:
        problems.append("lr must be positive")
    if cfg.augment_on not in AUGMENT_ON:
        problems.append(f"augment_on must be one of {', '.join(AUGMENT_ON)}")
    if min(cfg.input_size) < 16:
        problems.append("input_size must be at least 16x16")
    if min(cfg.canvas_size) < 16:
        problems.append("canvas_size must be at least 16x16")
    if len(cfg.mean) != 3 or len(cfg.std) != 3 or min(cfg.std) <= 0:
        problems.append("mean and std need 3 values each, std positive")
    if not 0 < cfg.threshold < 1:
        problems.append("threshold must lie strictly between 0 and 1")
    if cfg.soft_weight < 0 or cfg.workers < 0:
        problems.append("soft_weight and workers must not be negative")
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        problems.append("max_minutes must be positive")
    if problems:
        raise ConfigError(f"{src}: " + "; ".join(problems))


# ----------------------------------------------------------------------------------
# Lightning modules
# ----------------------------------------------------------------------------------


class OkraDataModule(L.LightningDataModule):
    """Train/val/test loaders over one dataset folder's grouped split (see :mod:`okrainsight.torchdata`)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set: OkraSegmentationDataset | None = None
        self.val_set: OkraSegmentationDataset | None = None

    def _dataset(self, split: str, *, train: bool) -> OkraSegmentationDataset:
        c = self.cfg
        return OkraSegmentationDataset(
            c.data,
            split,
            c.input_size,
            c.mean,
            c.std,
            train=train,
            negatives=c.negatives if train else (),
            use_soft=c.use_soft,
            augment=AugmentConfig(**c.augment),
            raw_canvas=c.canvas_size if train and c.augment_on == "device" else None,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self._dataset("train", train=True)
            self.val_set = self._dataset("val", train=False)
            if len(self.train_set) == 0:
                raise DatasetError(f"{self.cfg.data}: the training split is empty")
            if len(self.val_set) == 0:
                raise DatasetError(
                    f"{self.cfg.data}: the validation split is empty; add images or run 'okra dataset split'"
                )

    def _loader(self, ds: OkraSegmentationDataset, shuffle: bool) -> DataLoader:
        w = self.cfg.workers
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=w,
            persistent_workers=w > 0,
            drop_last=shuffle and len(ds) > self.cfg.batch_size,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None  # set by setup()
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None  # set by setup()
        return self._loader(self.val_set, False)


def _batchnorms(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every batch-norm layer of ``model`` (1-D, 2-D, 3-D and synchronised)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def freeze_parameters(model: torch.nn.Module, prefixes: list[str], batchnorm: bool = False) -> int:
    """Stop gradients to parameters named ``prefix`` or ``prefix.*`` (and batch norms' with ``batchnorm``).

    A prefix that names no parameter is a :class:`ConfigError` listing the model's top-level
    parts; so is freezing everything. Returns the number of trainable parameters left.
    """
    named = dict(model.named_parameters())
    for prefix in prefixes:
        hit = [n for n in named if n == prefix or n.startswith(prefix + ".")]
        if not hit:
            parts = ", ".join(name for name, _ in model.named_children())
            raise ConfigError(f"freeze: {prefix!r} names no parameter of the model; its parts are {parts}")
        for n in hit:
            named[n].requires_grad_(False)
    if batchnorm:
        for m in _batchnorms(model):
            for p in m.parameters():
                p.requires_grad_(False)
    left = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if left == 0:
        raise ConfigError("freeze: every parameter of the model is frozen; nothing would train")
    return left


class SegmentationModule(L.LightningModule):
    """A student plus its loss, metrics and optimiser schedule.

    With ``device_augment`` (``{"augment", "out_hw", "mean", "std"}``), training batches
    of uint8 images are augmented after they reach the device (:func:`augment_batch`).
    Training uses ``model.forward_train(x)`` (list of logits: fused, then side outputs)
    when the student offers it, else ``model(x)``; validation always scores the fused
    output. Logged: ``train_loss``, ``val_loss``, ``val_iou`` (torchmetrics
    ``BinaryJaccardIndex`` at 0.5), ``val_dice`` (``BinaryF1Score``), ``lr``.
    """

    def __init__(
        self,
        arch: str,
        arch_kwargs: dict[str, Any],
        loss: dict[str, float],
        optim: dict[str, Any],
        threshold: float = 0.5,
        freeze: list[str] | None = None,
        freeze_batchnorm: bool = False,
        device_augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_student(arch, **arch_kwargs)
        freeze_parameters(self.model, freeze or [], batchnorm=freeze_batchnorm)
        self.criterion = SegmentationLoss(LossConfig(**loss))
        self.device_augment_config = AugmentConfig(**device_augment["augment"]) if device_augment else None
        self.val_iou = BinaryJaccardIndex(threshold=threshold)
        self.val_dice = BinaryF1Score(threshold=threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment raw (uint8) training batches on the device when ``device_augment`` is set."""
        spec = self.hparams.get("device_augment")
        if (
            self.device_augment_config is not None
            and isinstance(batch, dict)
            and batch["image"].dtype == torch.uint8
        ):
            from okrainsight.batch_augment import augment_batch, rank_seed

            gen = getattr(self, "_augment_generator", None)
            if gen is None or gen.device != batch["image"].device:
                gen = torch.Generator(device=batch["image"].device)
                rank = self.trainer.global_rank if self._trainer is not None else 0
                gen.manual_seed(rank_seed(int(spec.get("seed", 0)), rank))
                self._augment_generator = gen
            batch = dict(batch)
            batch["image"], batch["mask"], batch["soft"] = augment_batch(
                batch["image"],
                batch["mask"],
                batch["soft"],
                tuple(spec["out_hw"]),
                self.device_augment_config,
                spec["mean"],
                spec["std"],
                gen,
            )
        return batch

    def on_train_epoch_start(self) -> None:
        """With ``freeze_batchnorm``, batch-norm layers go to eval mode (Lightning keeps modes as set)."""
        if self.hparams.get("freeze_batchnorm"):
            for m in _batchnorms(self.model):
                m.eval()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        outputs = self.model.forward_train(x) if hasattr(self.model, "forward_train") else self.model(x)
        loss, parts = self.criterion(outputs, batch["mask"], batch["soft"], batch["has_soft"])
        n = x.shape[0]
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        for key in ("bce", "dice", "soft"):
            self.log(f"train_{key}", parts[key], on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.model(batch["image"])
        loss, _ = self.criterion(logits, batch["mask"], batch["soft"], batch["has_soft"])
        prob = torch.sigmoid(logits.float())
        target = batch["mask"].int()
        self.val_iou.update(prob, target)
        self.val_dice.update(prob, target)
        n = logits.shape[0]
        self.log("val_loss", loss, on_epoch=True, prog_bar=False, batch_size=n, sync_dist=True)
        self.log("val_iou", self.val_iou, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("val_dice", self.val_dice, on_epoch=True, batch_size=n)

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.hparams["optim"]
        params = [p for p in self.model.parameters() if p.requires_grad]
        if o["optimizer"] == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"]
            )
        elif o["optimizer"] == "adam":
            opt = torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"])
        else:
            opt = torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if o["optimizer"] == "sgd":
            power = float(o["poly_power"])

            def factor(step: int) -> float:
                return max(0.0, 1.0 - min(step, total) / total) ** power

        else:

            def factor(step: int) -> float:
                return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ----------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------


def data_fingerprint(dataset: OkraSegmentationDataset) -> str:
    """``sha256:<hex>`` over the training items' names, image sizes and mask/soft hashes (module doc)."""
    lines = []
    for s in dataset.samples:
        size = s.image.stat().st_size
        if s.mask is None:
            lines.append(f"{s.stem}\t{s.image.name}\t{size}")
            continue
        soft = sha256_file(s.soft) if s.soft is not None else "-"
        lines.append(f"{s.stem}\t{s.image.name}\t{size}\t{sha256_file(s.mask)}\t{soft}")
    digest = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def teacher_provenance(root: str | os.PathLike[str], stems: list[str]) -> dict[str, Any] | None:
    """Summary of the labels' origin from ``manifest.jsonl``: teacher names/sources with counts.

    Reads the ``teacher`` (name), ``teacher_info`` (checkpoint hash and settings, as the
    labeller writes them) and ``source`` (e.g. ``synth`` for rendered scenes) fields.

    Returns None when the dataset has no manifest records for ``stems``.
    """
    records = latest_manifest_by_stem(DatasetLayout(root).manifest_path)
    teachers: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    details: list[dict[str, Any]] = []
    found = 0
    for stem in stems:
        rec = records.get(stem)
        if rec is None:
            continue
        found += 1
        t = rec.get("teacher")
        info = rec.get("teacher_info") if isinstance(rec.get("teacher_info"), dict) else None
        if isinstance(t, dict):
            info = info or t
            t = t.get("name", "unknown")
        if t:
            teachers[str(t)] += 1
            if info is not None and info not in details and len(details) < 5:
                details.append(info)
        src = rec.get("source")
        if src:
            sources[str(src)] += 1
    if not found:
        return None
    out: dict[str, Any] = {"records": found, "of": len(stems), "teachers": dict(teachers)}
    if sources:
        out["sources"] = dict(sources)
    if details:
        out["details"] = details
    return out


# ----------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------


def read_epoch_metrics(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """``{column: {epoch: last value}}`` from a Lightning CSV log (sparse rows merged)."""
    out: dict[str, dict[int, float]] = {}
    if not metrics_csv.is_file():
        return out
    with open(metrics_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            try:
                epoch = int(float(row.get("epoch") or "nan"))
            except ValueError:
                continue
            for key, val in row.items():
                if key in ("epoch", "step") or val in (None, ""):
                    continue
                try:
                    out.setdefault(key, {})[epoch] = float(val)
                except ValueError:
                    continue
    return out


def merge_csv_logs(log_root: Path, out: Path) -> Path:
    """Join the CSV logs of every training session (``log_root/version_<n>/metrics.csv``) into ``out``.

    A resumed session restarts at some epoch; rows of earlier sessions from that epoch on
    are dropped, so each epoch appears once, from the latest session that ran it.
    """
    sessions = sorted(log_root.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for path in sessions:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            new = list(reader)
            for col in reader.fieldnames or []:
                if col not in columns:
                    columns.append(col)
        epochs = [float(r["epoch"]) for r in new if r.get("epoch")]
        if epochs:
            start = min(epochs)
            rows = [r for r in rows if not r.get("epoch") or float(r["epoch"]) < start]
        rows.extend(new)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, buf.getvalue())
    return out


def save_curves(metrics_csv: Path, run: Path) -> list[Path]:
    """Plot loss and IoU per epoch from ``metrics_csv`` into ``run/loss.png`` and ``run/iou.png``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    data = read_epoch_metrics(metrics_csv)
    written = []
    for fname, keys, ylabel in (
        ("loss.png", ("train_loss_epoch", "val_loss"), "loss"),
        ("iou.png", ("val_iou", "val_dice"), "score"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
        for key in keys:
            series = data.get(key, {})
            if series:
                xs = sorted(series)
                ax.plot(xs, [series[e] for e in xs], marker="o", label=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        fig.tight_layout()
        out = run / fname
        tmp = run / f".{fname}.tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, out)
        written.append(out)
    return written


# ----------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision:
        return cfg.precision
    on_gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _devices(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def load_donor(source: str, arch: str, arch_kwargs: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A fine-tune's starting model (``init_from``) and the ``arch_kwargs`` the run must build.

    ``source`` is a model or run folder, a file inside one, or a built-in model's name
    (``default``); it must hold ``arch``. A run that sets no ``arch_kwargs`` takes the donor's
    (``okra train --init-from default`` builds the built-in model's width, whatever the config's
    default); a run that sets its own must match the donor's, else :class:`ConfigError` names both.
    """
    from okrainsight.export import load_export_source

    donor, card = load_export_source(source)
    if card.arch != arch:
        raise ConfigError(f"{source}: init_from holds a {card.arch!r} model, not {arch!r}")
    kwargs = dict(card.arch_kwargs)
    if arch_kwargs and dict(arch_kwargs) != kwargs:
        raise ConfigError(
            f"{source}: init_from holds {arch} with arch_kwargs {kwargs}, but this run sets "
            f"{dict(arch_kwargs)}; leave arch_kwargs unset to take the donor's"
        )
    return donor, kwargs


def train(cfg: TrainConfig) -> Path:
    """Train ``cfg.arch`` on ``cfg.data``; write the run folder ``cfg.out`` (module doc) and return it."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if not cfg.data or not cfg.out:
        raise ConfigError("training needs a dataset folder (DATA) and a run folder (--out)")
    DatasetLayout(cfg.data).require()
    run = Path(cfg.out)
    ckpt_dir = run / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if cfg.resume:
        if not last.is_file():
            raise ConfigError(f"{last}: nothing to resume (no last.ckpt in the run folder)")
        prev = run / "config.yaml"
        if prev.is_file():
            old = load_config_file(prev)
            if old.get("arch") not in (None, cfg.arch):
                raise ConfigError(f"{prev}: the run trained {old.get('arch')!r}, not {cfg.arch!r}")
    elif last.is_file():
        raise ConfigError(f"{run}: holds a training run already; pass --resume or choose a new --out")
    donor = None  # a fine-tune's starting weights, loaded once: they decide the kwargs, then initialise
    if cfg.init_from and not cfg.resume:
        donor, kwargs = load_donor(cfg.init_from, cfg.arch, cfg.arch_kwargs)
        if kwargs != dict(cfg.arch_kwargs):
            log.info("fine-tune of %s: arch_kwargs %s taken from it", cfg.init_from, kwargs)
            cfg = dataclasses.replace(cfg, arch_kwargs=kwargs)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True))

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = OkraDataModule(cfg)
    dm.setup("fit")
    assert dm.train_set is not None and dm.val_set is not None
    loss = {
        k: getattr(cfg, k)
        for k in (
            "bce_weight",
            "dice_weight",
            "soft_weight",
            "negative_image_weight",
            "false_positive_weight",
        )
    }
    optim = {k: getattr(cfg, k) for k in ("optimizer", "lr", "weight_decay", "momentum", "poly_power")}
    module = SegmentationModule(
        cfg.arch,
        dict(cfg.arch_kwargs),
        loss,
        optim,
        cfg.threshold,
        freeze=list(cfg.freeze),
        freeze_batchnorm=cfg.freeze_batchnorm,
        device_augment=(
            {
                "augment": dict(cfg.augment),
                "out_hw": [cfg.input_size[1], cfg.input_size[0]],
                "mean": list(cfg.mean),
                "std": list(cfg.std),
                "seed": cfg.seed,
            }
            if cfg.augment_on == "device"
            else None
        ),
    )
    if donor is not None:
        module.model.load_state_dict(donor.state_dict())
        log.info("initialised %s from %s", cfg.arch, cfg.init_from)

    ckpt_cb = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:03d}",
        monitor="val_iou",
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    callbacks: list[Any] = [
        ckpt_cb,
        EarlyStopping(monitor="val_iou", mode="max", patience=cfg.patience),
    ]
    csv_logger = CSVLogger(run / "logs", name="csv")  # logs/csv/version_<n>/ per session (resume adds one)
    loggers = [csv_logger, TensorBoardLogger(run / "logs", name="tb", default_hp_metric=False)]
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        max_time=_dt.timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        accelerator=cfg.accelerator,
        devices=_devices(cfg.devices),
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=_precision(cfg),
        callbacks=callbacks,
        logger=loggers,
        default_root_dir=run,
        log_every_n_steps=cfg.log_every_n_steps,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        enable_progress_bar=cfg.progress,
        enable_model_summary=cfg.progress,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        # the module's on_after_batch_transfer (device augmentation) is meant to win over the data module's
        warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if cfg.resume else None)
    if not trainer.is_global_zero:
        return run

    merge_csv_logs(run / "logs" / "csv", run / "metrics.csv")
    save_curves(run / "metrics.csv", run)

    best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else last
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    model = create_student(cfg.arch, **cfg.arch_kwargs)
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
    per_epoch = read_epoch_metrics(run / "metrics.csv")
    best_epoch = None
    if per_epoch.get("val_iou"):
        best_epoch = max(per_epoch["val_iou"], key=lambda e: per_epoch["val_iou"][e])
    metrics: dict[str, Any] = {"epochs": int(trainer.current_epoch), "best_epoch": best_epoch}
    for key in ("val_iou", "val_dice", "val_loss"):
        if best_epoch is not None and best_epoch in per_epoch.get(key, {}):
            metrics[key] = per_epoch[key][best_epoch]
    train_stems = [s.stem for s in dm.train_set.samples if s.mask is not None]
    card = ModelCard(
        arch=cfg.arch,
        arch_kwargs=dict(cfg.arch_kwargs),
        input_size=cfg.input_size,
        mean=cfg.mean,
        std=cfg.std,
        threshold=cfg.threshold,
        name=cfg.name or run.name,
        data_fingerprint=data_fingerprint(dm.train_set),
        teacher=teacher_provenance(cfg.data, train_stems),
        metrics=metrics,
        extra={
            "training": cfg.to_dict(),
            "best_checkpoint": str(best.relative_to(run)) if best.is_relative_to(run) else str(best),
            "split_sizes": {"train": len(dm.train_set), "val": len(dm.val_set)},
            "test_stems": len(read_split_stems(cfg.data, "test")),
        },
    )
    save_checkpoint(run, model, card)
    log.info("saved the best model (val_iou=%s) into %s", metrics.get("val_iou"), run)
    return run


__all__ = [
    "OkraDataModule",
    "SegmentationModule",
    "TrainConfig",
    "data_fingerprint",
    "load_config_file",
    "make_config",
    "read_epoch_metrics",
    "save_curves",
    "teacher_provenance",
    "train",
]
