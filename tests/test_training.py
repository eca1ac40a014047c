"""Training smoke tests: the loss falls and validation IoU rises on a tiny set; resume; run folder; config."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from okrainsight.checkpoint import load_checkpoint
from okrainsight.dataset import append_manifest
from okrainsight.errors import ConfigError
from okrainsight.imageio import read_mask, write_image, write_mask, write_soft
from okrainsight.students import registry
from okrainsight.synth import render_dataset
from okrainsight.torchdata import (
    AugmentConfig,
    OkraSegmentationDataset,
    fallback_split,
    group_of,
    read_split_stems,
)
from okrainsight.training import load_config_file, make_config, read_epoch_metrics, train

torch.set_num_threads(1)

TINY = "_test_tiny_training"


class TinyNet(nn.Module):
    """Three convolutions at full resolution: enough to learn 'green blob' in a few epochs."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


if TINY not in registry._REGISTRY:
    registry.register_student(TINY)(lambda width=8: TinyNet(width))


def draw_scene(rng: np.random.Generator, size: int = 64, okra: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A plain background, a brown distractor blob (not okra) and (optionally) one elongated green
    ellipse (okra); returns (image, mask)."""
    bg = rng.integers(150, 250, size=3)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = bg
    mask = np.zeros((size, size), np.uint8)
    d = (int(rng.integers(10, size - 10)), int(rng.integers(10, size - 10)))
    brown = (int(rng.integers(120, 170)), int(rng.integers(70, 110)), int(rng.integers(30, 60)))
    cv2.ellipse(
        img,
        d,
        (int(rng.integers(8, 16)), int(rng.integers(4, 8))),
        float(rng.uniform(0, 180)),
        0,
        360,
        brown,
        -1,
    )
    if okra:
        c = (int(rng.integers(20, size - 20)), int(rng.integers(20, size - 20)))
        axes = (int(rng.integers(14, 24)), int(rng.integers(5, 9)))
        ang = float(rng.uniform(0, 180))
        cv2.ellipse(mask, c, axes, ang, 0, 360, 255, -1)
        green = np.array([int(rng.integers(40, 90)), int(rng.integers(120, 170)), int(rng.integers(30, 70))])
        img[mask > 0] = green
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), mask


def make_dataset(root: Path, n: int = 24, size: int = 64, seed: int = 0) -> Path:
    """A tiny dataset of drawn scenes (every sixth without okra)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        img, mask = draw_scene(rng, size, okra=i % 6 != 5)
        stem = f"s{i:03d}"
        write_image(root / "images" / f"{stem}.png", img)
        write_mask(root / "masks" / f"{stem}.png", mask)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 rendered 96x96 scenes; half relabelled as if by a teacher (soft map + manifest record)."""
    root = render_dataset(
        tmp_path_factory.mktemp("data") / "ds",
        32,
        seed=0,
        size=(96, 96),
        kinds=["white", "cloth", "paper"],
        workers=1,
        progress=False,
    )
    for stem in sorted(p.stem for p in (root / "images").iterdir())[::2]:
        mask = read_mask(root / "masks" / f"{stem}.png")
        write_soft(
            root / "soft" / f"{stem}.png", cv2.GaussianBlur(mask.astype(np.float32) / 255, (5, 5), 1.0)
        )
        record = {"stem": stem, "teacher": "grabcut", "teacher_info": {"name": "grabcut", "iterations": 5}}
        append_manifest(root / "manifest.jsonl", record)
    return root


def smoke_overrides(data: Path, out: Path, **kw: object) -> dict:
    base = dict(
        data=str(data),
        out=str(out),
        arch=TINY,
        input_size=(96, 96),
        epochs=6,
        batch_size=8,
        lr=0.01,
        optimizer="adamw",
        workers=0,
        progress=False,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
        patience=50,
        augment={
            "rotation": 0,
            "color_jitter": 0.1,
            "jpeg": 0,
            "blur": 0,
            "noise": 0.01,
            "scale": [0.8, 1.0],
        },
    )
    base.update(kw)
    return base


def test_group_split_is_grouped_and_deterministic() -> None:
    stems = [f"pod{i}{suf}" for i in range(30) for suf in ("", "_tipbreak", "_tipbend", "_pose2")]
    a = fallback_split(stems)
    assert a == fallback_split(list(reversed(stems)))
    assert sum(len(v) for v in a.values()) == len(stems)
    groups = {k: {group_of(s) for s in v} for k, v in a.items()}
    assert not (groups["train"] & groups["val"]) and not (groups["train"] & groups["test"])
    assert len(a["val"]) >= 4 and len(a["train"]) > len(a["val"])
    assert group_of("pod7_tipbreak") == group_of("pod7_pose3") == "pod7"


def test_split_files_are_honoured(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "ds", n=6)
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("s000\ns001\ns002\n")
    (data / "splits" / "val.txt").write_text("s003\ns004\n")
    (data / "splits" / "test.txt").write_text("s005\n")
    assert read_split_stems(data, "val") == ["s003", "s004"]
    ds = OkraSegmentationDataset(data, "test", (32, 48), (0.5,) * 3, (0.25,) * 3)
    item = ds[0]
    assert item["stem"] == "s005"
    assert item["image"].shape == (3, 48, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 48, 32)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["has_soft"].item() == 0.0


def test_augmentation_moves_mask_with_image(tmp_path: Path) -> None:
    # the image is the mask itself (white pod on black): after random geometry they must still agree
    rng = np.random.default_rng(3)
    for i in range(4):
        _, mask = draw_scene(rng, 64)
        write_image(tmp_path / "ds" / "images" / f"m{i}.png", np.repeat(mask[:, :, None], 3, axis=2))
        write_mask(tmp_path / "ds" / "masks" / f"m{i}.png", mask)
    write_image(tmp_path / "neg" / "leaf.png", np.full((40, 50, 3), 90, np.uint8))
    geometric_only = {
        "color_jitter": 0,
        "blur": 0,
        "noise": 0,
        "jpeg": 0,
        "rotation": 40,
        "scale": [0.4, 0.9],
    }
    ds = OkraSegmentationDataset(
        tmp_path / "ds",
        "all",
        (48, 56),
        (0.0,) * 3,
        (1.0,) * 3,
        train=True,
        negatives=[tmp_path / "neg"],
        augment=AugmentConfig(**geometric_only),
    )
    assert len(ds) == 5 and ds.samples[-1].stem == "neg:leaf"
    assert ds[4]["mask"].sum() == 0 and ds[4]["image"].shape == (3, 56, 48)
    torch.manual_seed(0)
    for _ in range(5):
        for i in range(4):
            item = ds[i]
            img_fg, mask = item["image"][0] > 0.5, item["mask"][0] > 0.5
            union = (img_fg | mask).sum()
            if union > 0:
                assert (img_fg & mask).sum() / union > 0.85
            # the soft map (here: the hard mask) moves with them too
            assert torch.equal(item["soft"][0] > 0.5, mask)
    assert not torch.equal(ds[0]["mask"], ds[0]["mask"])  # the geometry is random
    colour = OkraSegmentationDataset(tmp_path / "ds", "all", (64, 64), (0.0,) * 3, (1.0,) * 3, train=True)
    a, b = colour[0]["image"], colour[0]["image"]
    assert not torch.equal(a, b)  # random photometric + geometric changes


def test_soft_maps_are_read_where_present(tiny_data: Path) -> None:
    ds = OkraSegmentationDataset(tiny_data, "all", (48, 48), (0.5,) * 3, (0.25,) * 3)
    flags = [ds[i]["has_soft"].item() for i in range(len(ds))]
    assert flags.count(1.0) == 16 and flags.count(0.0) == 16
    item = ds[0]  # the first stem has a blurred soft map: values strictly between 0 and 1 occur
    assert item["has_soft"].item() == 1.0
    assert ((item["soft"] > 0.05) & (item["soft"] < 0.95)).any()
    assert (
        OkraSegmentationDataset(tiny_data, "all", (48, 48), (0.5,) * 3, (0.25,) * 3, use_soft=False)[0][
            "has_soft"
        ].item()
        == 0.0
    )


def test_config_file_and_cli_override(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 7\nlr: 0.5\ninput_size: 96x64\noptimizer: sgd\n")
    cfg = make_config(cfg_file, {"lr": 0.01, "batch_size": None})
    assert cfg.epochs == 7 and cfg.lr == 0.01 and cfg.input_size == (96, 64) and cfg.optimizer == "sgd"
    assert cfg.batch_size == 16
    cfg_file.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown option"):
        make_config(cfg_file)
    with pytest.raises(ConfigError, match="optimizer"):
        make_config(None, {"optimizer": "lion"})


def test_shipped_configs_parse() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in (
        "default.yaml",
        "smoke.yaml",
        "default-gpu.yaml",
        "default-gpu2.yaml",
        "default-gpu3.yaml",
        "default-round8.yaml",
        "default-round9.yaml",
        "default-round10.yaml",
        "default-round11.yaml",
        "default-round12.yaml",
        "default-round13.yaml",
    ):
        cfg = make_config(root / name)
        assert cfg.epochs >= 1 and min(cfg.input_size) >= 16
    # the default model's recipe (make train-default): green surroundings in both of its steps
    for name in ("default-gpu2.yaml", "default-round9.yaml", "default-gpu3.yaml", "default-round10.yaml"):
        assert make_config(root / name).augment["background"] == 0.3
    # v0.9's two steps train the student at width 0.75, the GPU run on the schedule it was planned with
    for name in ("default-gpu3.yaml", "default-round10.yaml"):
        assert make_config(root / name).arch_kwargs == {"width": 0.75}
    assert make_config(root / "default-gpu3.yaml").epochs == 119


def test_training_learns_and_resumes(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = train(make_config(None, smoke_overrides(tiny_data, run, epochs=6)))
    assert out == run
    for name in ("card.json", "model.safetensors", "metrics.csv", "loss.png", "iou.png", "config.yaml"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert any((run / "logs" / "tb").rglob("events.out.tfevents.*"))
    per_epoch = read_epoch_metrics(run / "metrics.csv")
    loss, iou = per_epoch["train_loss_epoch"], per_epoch["val_iou"]
    assert sorted(loss) == [0, 1, 2, 3, 4, 5]
    assert loss[5] < loss[0] * 0.85
    # a 3-layer net on 32 scenes: from ~0 after one epoch to well above (0.27 measured on 2026-11-26)
    assert max(iou.values()) > iou[0] + 0.15 and max(iou.values()) > 0.2

    card = json.loads((run / "card.json").read_text())
    assert card["arch"] == TINY and card["input_size"] == [96, 96]
    assert card["data_fingerprint"].startswith("sha256:")
    teacher = card["teacher"]
    assert teacher["records"] == teacher["of"] == card["extra"]["split_sizes"]["train"]
    assert 0 < teacher["teachers"]["grabcut"] < teacher["records"]
    assert teacher["sources"]["synth"] + teacher["teachers"]["grabcut"] == teacher["records"]
    assert teacher["details"] == [{"name": "grabcut", "iterations": 5}]
    assert card["metrics"]["val_iou"] == pytest.approx(max(iou.values()))
    assert card["extra"]["training"]["lr"] == 0.01
    model, loaded = load_checkpoint(run)
    assert loaded.arch == TINY
    assert model(torch.zeros(1, 3, 40, 40)).shape == (1, 1, 40, 40)

    # a second run on the same folder needs --resume; resuming continues at epoch 5
    with pytest.raises(ConfigError, match="resume"):
        train(make_config(None, smoke_overrides(tiny_data, run, epochs=7)))
    train(make_config(None, smoke_overrides(tiny_data, run, epochs=7, resume=True)))
    with open(run / "metrics.csv", newline="") as fh:
        epochs = {int(float(r["epoch"])) for r in csv.DictReader(fh) if r.get("epoch")}
    assert epochs == set(range(7))  # the history of both sessions
    assert json.loads((run / "card.json").read_text())["metrics"]["epochs"] == 7


def test_training_with_augmentation_on_the_device_learns(tiny_data: Path, tmp_path: Path) -> None:
    # the loader only decodes (uint8 at the canvas size); batches are augmented where the model is
    run = tmp_path / "dev"
    cfg = make_config(None, smoke_overrides(tiny_data, run, augment_on="device", canvas_size=(96, 96)))
    train(cfg)
    per_epoch = read_epoch_metrics(run / "metrics.csv")
    loss, iou = per_epoch["train_loss_epoch"], per_epoch["val_iou"]
    assert loss[5] < loss[0] * 0.85
    assert max(iou.values()) > iou[0] + 0.15 and max(iou.values()) > 0.2
    card = json.loads((run / "card.json").read_text())
    assert card["extra"]["training"]["augment_on"] == "device"
    assert card["extra"]["training"]["canvas_size"] == [96, 96]


def test_resume_without_checkpoint_is_an_error(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(make_config(None, smoke_overrides(tiny_data, tmp_path / "r", resume=True)))


def test_cli_train_config_with_flag_override(tiny_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from okrainsight.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"arch: {TINY}\nepochs: 5\nbatch_size: 16\ninput_size: [64, 64]\nworkers: 0\n"
        "accelerator: cpu\ndevices: 1\nprogress: false\nlr: 0.3\n"
    )
    run = tmp_path / "run"
    args = ["train", str(tiny_data), "--out", str(run), "--config", str(cfg), "--epochs", "1", "--lr", "0.01"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best val IoU" in result.output
    saved = load_config_file(run / "config.yaml")
    assert (saved["epochs"], saved["lr"], saved["batch_size"], saved["input_size"]) == (1, 0.01, 16, [64, 64])
    card = json.loads((run / "card.json").read_text())
    assert card["metrics"]["epochs"] == 1 and card["input_size"] == [64, 64]


def test_init_from_copies_weights_and_refuses_other_arch(tmp_path: Path) -> None:
    from okrainsight.checkpoint import ModelCard, save_checkpoint
    from okrainsight.errors import ConfigError
    from okrainsight.training import load_donor

    torch.manual_seed(1)
    donor = TinyNet(8)
    save_checkpoint(tmp_path / "donor", donor, ModelCard(arch=TINY, arch_kwargs={"width": 8}))
    fresh = TinyNet(8)
    assert not torch.equal(fresh.head.weight, donor.head.weight)
    fresh.load_state_dict(load_donor(str(tmp_path / "donor"), TINY, {})[0].state_dict())
    for key, value in donor.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="init_from holds"):
        load_donor(str(tmp_path / "donor"), "okra_lraspp_small", {})


def test_init_from_takes_the_built_in_default_by_name() -> None:
    """``okra train --init-from default`` (the example of ``okra train --help``) fine-tunes the
    built-in model: its weights load by name, as ``okra export default`` finds them."""
    from okrainsight.checkpoint import load_card, load_checkpoint
    from okrainsight.errors import ModelError
    from okrainsight.runtime import BUILTIN_DIR
    from okrainsight.students import create_student
    from okrainsight.training import load_donor

    card = load_card(BUILTIN_DIR / "default")
    fresh = create_student(card.arch, **card.arch_kwargs)
    fresh.load_state_dict(load_donor("default", card.arch, {})[0].state_dict())
    builtin, _ = load_checkpoint(BUILTIN_DIR / "default")
    for key, value in builtin.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    with pytest.raises(ModelError, match="no built-in model named .nosuchmodel."):
        load_donor("nosuchmodel", card.arch, {})


def test_built_in_default_fits_its_budget_and_names_its_runs() -> None:
    """The built-in default is committed inside the package in at most 2 MB (issue 4), and its
    card still names every run averaged into it (a mean of means keeps the lineage, not the
    nested cards, which took v0.11's first install over the budget)."""
    from okrainsight.average import lineage
    from okrainsight.checkpoint import load_card
    from okrainsight.runtime import BUILTIN_DIR

    folder = BUILTIN_DIR / "default"
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    assert {"card.json", "model.onnx", "model.safetensors"} <= set(files)
    assert sum(files.values()) <= 2_000_000, files

    def runs(tree: list) -> list[str]:
        return [n for s in tree for n in (s["run"], *runs(s.get("averaged_from", [])))]

    named = runs(lineage(load_card(folder).extra.get("averaged_from", [])))
    assert len(named) >= 2 and all(isinstance(n, str) and n for n in named)


def test_fine_tune_builds_the_donors_arch_kwargs(tiny_data: Path, tmp_path: Path) -> None:
    """A fine-tune builds the donor's width when its config sets none (the built-in default is
    wider than the student's own default since v0.9, so ``--init-from default`` with a plain
    config needs this), and refuses a config that sets another."""
    from okrainsight.checkpoint import ModelCard, load_card, save_checkpoint
    from okrainsight.runtime import BUILTIN_DIR
    from okrainsight.training import TrainConfig, load_donor

    card = load_card(BUILTIN_DIR / "default")
    assert card.arch_kwargs and TrainConfig().arch_kwargs == {}  # v0.9: {"width": 0.75}
    assert load_donor("default", card.arch, {})[1] == card.arch_kwargs
    assert load_donor("default", card.arch, dict(card.arch_kwargs))[1] == card.arch_kwargs
    with pytest.raises(ConfigError, match="leave arch_kwargs unset"):
        load_donor("default", card.arch, {"width": 0.25})
    with pytest.raises(ConfigError, match="init_from holds"):
        load_donor("default", "u2netp", {})
    # end to end on a tiny student: the run's card and weights have the donor's width
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "donor", TinyNet(5), ModelCard(arch=TINY, arch_kwargs={"width": 5}))
    run = train(
        make_config(
            None,
            smoke_overrides(
                tiny_data, tmp_path / "ft", arch=TINY, epochs=1, init_from=str(tmp_path / "donor")
            ),
        )
    )
    tuned, tuned_card = load_checkpoint(run)
    assert tuned_card.arch_kwargs == {"width": 5} and tuned.head.weight.shape == TinyNet(5).head.weight.shape


TINY_BN = "_test_tiny_bn_training"


class TinyBNNet(nn.Module):
    """A convolution with batch norm, then a 1x1 head: for freezing parts of a fine-tune."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


if TINY_BN not in registry._REGISTRY:
    registry.register_student(TINY_BN)(lambda width=8: TinyBNNet(width))


def test_freeze_keeps_the_donors_parts_and_batchnorm(tiny_data: Path, tmp_path: Path) -> None:
    from okrainsight.checkpoint import ModelCard, save_checkpoint

    torch.manual_seed(3)
    donor = TinyBNNet(8)
    with torch.no_grad():  # running statistics far from what the data gives
        donor.body[1].running_mean.fill_(5.0)
        donor.body[1].running_var.fill_(9.0)
    save_checkpoint(tmp_path / "donor", donor, ModelCard(arch=TINY_BN, arch_kwargs={"width": 8}))
    common = dict(arch=TINY_BN, arch_kwargs={"width": 8}, epochs=1, init_from=str(tmp_path / "donor"))

    train(
        make_config(
            None,
            smoke_overrides(tiny_data, tmp_path / "frozen", **common, freeze=["body"], freeze_batchnorm=True),
        )
    )
    frozen, _ = load_checkpoint(tmp_path / "frozen")
    for key, value in donor.state_dict().items():
        if key.startswith("body."):
            assert torch.equal(frozen.state_dict()[key], value), key
    assert not torch.equal(frozen.head.weight, donor.head.weight)  # the head trained

    # without freezing, the same step moves the body and the batch-norm statistics
    train(make_config(None, smoke_overrides(tiny_data, tmp_path / "free", **common)))
    free, _ = load_checkpoint(tmp_path / "free")
    assert not torch.equal(free.body[0].weight, donor.body[0].weight)
    assert not torch.equal(free.body[1].running_mean, donor.body[1].running_mean)

    # batch norm alone: statistics and scales stay, the convolution trains
    train(make_config(None, smoke_overrides(tiny_data, tmp_path / "bn", **common, freeze_batchnorm=True)))
    bn, _ = load_checkpoint(tmp_path / "bn")
    for key in ("running_mean", "running_var", "weight", "bias"):
        assert torch.equal(getattr(bn.body[1], key), getattr(donor.body[1], key)), key
    assert not torch.equal(bn.body[0].weight, donor.body[0].weight)


def test_freeze_refuses_unknown_parts_and_freezing_everything() -> None:
    from okrainsight.training import freeze_parameters

    with pytest.raises(ConfigError, match="'neck' names no parameter.*body, head"):
        freeze_parameters(TinyBNNet(4), ["neck"])
    with pytest.raises(ConfigError, match="nothing would train"):
        freeze_parameters(TinyBNNet(4), ["body", "head"])
    model = TinyBNNet(4)
    assert freeze_parameters(model, ["body.0"], batchnorm=True) == 4 + 1  # the head's weight and bias
    assert make_config(None, {"freeze": "backbone"}).freeze == ["backbone"]
