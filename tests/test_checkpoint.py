"""Checkpoint format: card + safetensors weights, validated on load, never unpickled."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from okrainsight.checkpoint import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    load_card,
    load_checkpoint,
    resolve_model_dir,
    save_card,
    save_checkpoint,
)
from okrainsight.errors import ModelError

ARCH = "okra_unet_tiny"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _full_card() -> ModelCard:
    return ModelCard(
        arch=ARCH,
        arch_kwargs={"width": 0.5, "decoder": [16, 16, 16, 8]},
        input_size=(320, 256),
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        threshold=0.42,
        zooms=(1.0, 2.0),
        labels=("background", "okra"),
        name="okra-test",
        data_fingerprint="sha256:abc",
        teacher={"name": "sam", "checkpoint_sha256": "deadbeef"},
        metrics={"val_iou": 0.91},
        extra={"epochs": 3},
    )


def _tiny_model(**kw: object) -> torch.nn.Module:
    from okrainsight.students import create_student

    torch.manual_seed(0)
    return create_student(ARCH, **({"width": 0.5, "decoder": [16, 16, 16, 8]} | kw)).eval()


def test_card_round_trip(tmp_path: Path) -> None:
    card = _full_card()
    path = save_card(tmp_path, card)
    assert path == tmp_path / CARD_FILE
    assert card.created  # filled on save
    loaded = load_card(tmp_path)
    assert loaded == card
    assert load_card(path) == card  # a file inside the folder works too
    data = json.loads(path.read_text())
    assert data["format"] == "okrainsight-model/1"
    assert data["input_size"] == [320, 256]
    assert data["zooms"] == [1.0, 2.0]
    assert ModelCard.from_dict(card.to_dict()) == card


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"arch": ""}, "arch"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "high"}, "invalid card field"),
        ({"mean": [0.5, 0.5]}, "mean"),
        ({"input_size": ["a", 3]}, "invalid card field"),
        ({"format": "someone-else/9"}, "unsupported card format"),
        ({"arch_kwargs": [1, 2]}, "arch_kwargs must be a JSON object"),
        ({"zooms": [0.5]}, "zoom must be 0"),
        ({"zooms": []}, "at least one zoom"),
    ],
)
def test_invalid_card_fields_name_the_file(tmp_path: Path, patch: dict[str, object], problem: str) -> None:
    data = _full_card().to_dict() | patch
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError) as info:
        load_card(tmp_path)
    assert str(tmp_path / CARD_FILE) in str(info.value)
    assert problem in str(info.value)


def test_card_that_is_not_json_or_not_an_object(tmp_path: Path) -> None:
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_card(tmp_path)
    (tmp_path / CARD_FILE).write_text("[1, 2]")
    with pytest.raises(ModelError, match="JSON object"):
        load_card(tmp_path)


def test_resolve_model_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model"):
        resolve_model_dir(tmp_path / "missing")
    with pytest.raises(ModelError, match="no card.json in this folder"):
        resolve_model_dir(tmp_path)
    stray = tmp_path / "model.onnx"
    stray.write_bytes(b"x")
    with pytest.raises(ModelError, match="beside this file"):
        resolve_model_dir(stray)


def test_checkpoint_round_trip_keeps_card_and_outputs(tmp_path: Path) -> None:
    model = _tiny_model()
    card = _full_card()
    out = save_checkpoint(tmp_path / "run", model, card)
    assert sorted(p.name for p in out.iterdir()) == [CARD_FILE, WEIGHTS_FILE]
    loaded, loaded_card = load_checkpoint(out / WEIGHTS_FILE)
    assert loaded_card == card
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_weights_that_do_not_fit_give_model_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _tiny_model(), _full_card())
    data = json.loads((tmp_path / CARD_FILE).read_text())
    data["arch_kwargs"] = {"width": 1.0}  # a different network shape than the weights
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError) as info:
        load_checkpoint(tmp_path)
    assert str(tmp_path / WEIGHTS_FILE) in str(info.value)
    assert "do not fit" in str(info.value)


def test_card_arguments_the_builder_refuses_give_model_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _tiny_model(), _full_card())
    data = json.loads((tmp_path / CARD_FILE).read_text())
    data["arch_kwargs"] = {"no_such_option": 3}
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"card\.json: arch_kwargs do not fit"):
        load_checkpoint(tmp_path)


def test_unknown_arch_in_card_is_model_error(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _tiny_model(), _full_card())
    data = json.loads((tmp_path / CARD_FILE).read_text()) | {"arch": "no_such_arch"}
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="unknown student architecture 'no_such_arch'"):
        load_checkpoint(tmp_path)


def test_missing_or_corrupt_weights_give_model_error(tmp_path: Path) -> None:
    save_card(tmp_path, _full_card())
    with pytest.raises(ModelError, match="no model.safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"\x00" * 7)
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_checkpoint(tmp_path)


def test_pickled_weights_are_refused_not_unpickled(tmp_path: Path) -> None:
    save_card(tmp_path, _full_card())
    torch.save(_tiny_model().state_dict(), tmp_path / WEIGHTS_FILE)  # a pickle in disguise
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_checkpoint(tmp_path)


def test_loading_uses_no_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_checkpoint(tmp_path, _tiny_model(), _full_card())
    assert (tmp_path / WEIGHTS_FILE).read_bytes()[:2] != b"\x80\x02"  # no pickle header
    assert not (tmp_path / WEIGHTS_FILE).read_bytes().startswith(b"PK")  # not a torch zip

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling was attempted")

    class NoUnpickler:
        def __init__(self, *args: object, **kwargs: object) -> None:
            forbidden()

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", NoUnpickler)
    monkeypatch.setattr(torch, "load", forbidden)
    model, card = load_checkpoint(tmp_path)
    assert card.arch == ARCH
    assert sum(p.numel() for p in model.parameters()) > 0


def test_load_card_does_not_import_torch(tmp_path: Path) -> None:
    save_card(tmp_path, _full_card())
    code = (
        "import sys\n"
        "from okrainsight.checkpoint import load_card\n"
        f"card = load_card({str(tmp_path)!r})\n"
        "assert card.arch == 'okra_unet_tiny', card.arch\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'safetensors.torch') if m in sys.modules)\n"
        "print('IMPORTED:' + ','.join(heavy))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "IMPORTED:", res.stdout


def test_compact_card_reads_back_the_same_and_is_smaller(tmp_path: Path) -> None:
    card = _full_card()
    pretty = save_card(tmp_path / "pretty", card)
    compact = save_card(tmp_path / "compact", card, indent=None)
    assert len(compact.read_text().splitlines()) == 1
    assert compact.stat().st_size < pretty.stat().st_size
    assert load_card(tmp_path / "compact").to_dict() == load_card(tmp_path / "pretty").to_dict()
