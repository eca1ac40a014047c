"""Weight averaging of trained models (``okrainsight.average``, ``okra average``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from okrainsight.average import average_checkpoints, average_models
from okrainsight.checkpoint import ModelCard, load_card, load_checkpoint, save_checkpoint
from okrainsight.cli import main
from okrainsight.errors import ModelError
from okrainsight.students import create_student

ARCH = "okra_lraspp_small"
KW = {"width": 0.5}


def _save(
    folder: Path,
    seed: int,
    fingerprint: str | None = "sha256:data",
    teacher: dict | None = None,
    **kw: object,
) -> Path:
    torch.manual_seed(seed)
    model = create_student(ARCH, **(KW | kw)).eval()
    with torch.no_grad():  # distinct batch-norm statistics too, so that buffers are checked
        for name, buf in model.named_buffers():
            if buf.is_floating_point():
                buf.copy_(torch.rand_like(buf) + seed)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(100 * (seed + 1))
    card = ModelCard(
        arch=ARCH,
        arch_kwargs=KW | kw,
        input_size=(64, 64),
        name=f"run{seed}",
        data_fingerprint=fingerprint,
        metrics={"val_iou": 0.5 + seed / 10},
        teacher=teacher,
        extra={"epochs": seed},
    )
    return save_checkpoint(folder, model, card)


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder)[0].state_dict()


def test_the_mean_of_two_models_is_the_mean_of_their_tensors(tmp_path: Path) -> None:
    a, b = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    model, card = average_checkpoints([a, b])
    sa, sb, sm = _state(a), _state(b), model.state_dict()
    floats = [k for k, v in sa.items() if v.is_floating_point()]
    assert any("running_mean" in k for k in floats)  # batch-norm statistics are averaged too
    for k in floats:
        assert torch.allclose(sm[k], (sa[k] + sb[k]) / 2, atol=1e-6), k
    counters = [k for k in sa if k.endswith("num_batches_tracked")]
    assert counters and all(int(sm[k]) == 100 for k in counters)  # integer buffers: the first model's
    # the averaged model runs and differs from both sources
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 1, 64, 64)
    assert not torch.allclose(sm[floats[0]], sa[floats[0]])
    assert card.name == "run0" and card.metrics == {}
    assert [s["run"] for s in card.extra["averaged_from"]] == ["a", "b"]
    assert [s["metrics"]["val_iou"] for s in card.extra["averaged_from"]] == [0.5, 0.6]
    # the first model's own training record moves into its entry instead of describing the mean
    assert set(card.extra) == {"averaged_from"}
    assert card.extra["averaged_from"][0]["extra"] == {"epochs": 0}


def test_weights_are_normalised_and_applied(tmp_path: Path) -> None:
    a, b = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    model, card = average_checkpoints([a, b], [3, 1])
    sa, sb, sm = _state(a), _state(b), model.state_dict()
    key = next(k for k, v in sa.items() if v.is_floating_point() and v.numel() > 10)
    assert torch.allclose(sm[key], 0.75 * sa[key] + 0.25 * sb[key], atol=1e-6)
    assert [s["weight"] for s in card.extra["averaged_from"]] == [0.75, 0.25]
    # weight 0 for the second model gives the first model back
    only_a, _ = average_checkpoints([a, b], [1, 0])
    assert all(torch.allclose(only_a.state_dict()[k], v) for k, v in sa.items())


def test_fingerprint_names_the_sources_and_their_weights(tmp_path: Path) -> None:
    a, b = _save(tmp_path / "a", 0, "sha256:one"), _save(tmp_path / "b", 1, "sha256:two")
    equal = average_checkpoints([a, b])[1].data_fingerprint
    assert equal and equal.startswith("avg-sha256:")
    assert average_checkpoints([a, b], [2, 1])[1].data_fingerprint != equal
    c = _save(tmp_path / "c", 2, None)
    assert average_checkpoints([a, c])[1].data_fingerprint is None  # unknown data stays unknown


@pytest.mark.parametrize(
    ("other", "problem"),
    [
        ({"width": 0.75}, "arch_kwargs"),
        (None, "at least two models"),
    ],
)
def test_mismatched_or_missing_models_are_refused(tmp_path: Path, other: dict | None, problem: str) -> None:
    a = _save(tmp_path / "a", 0)
    paths = [a] if other is None else [a, _save(tmp_path / "b", 1, **other)]
    with pytest.raises(ModelError, match=problem) as info:
        average_checkpoints(paths)
    if other is not None:
        assert str(tmp_path / "b") in str(info.value)  # names the model that does not fit


@pytest.mark.parametrize(
    "weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [float("inf"), 1.0], [float("nan"), 1.0]]
)
def test_bad_weights_are_refused(tmp_path: Path, weights: list[float]) -> None:
    a, b = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    with pytest.raises(ModelError, match="weight"):
        average_checkpoints([a, b], weights)


def test_teacher_record_is_kept_only_when_all_sources_agree(tmp_path: Path) -> None:
    sam = {"name": "sam", "checkpoint_sha256": "abc"}
    a, b = _save(tmp_path / "a", 0, teacher=sam), _save(tmp_path / "b", 1, teacher=sam)
    assert average_checkpoints([a, b])[1].teacher == sam
    c = _save(tmp_path / "c", 2, teacher={"name": "grabcut", "checkpoint_sha256": None})
    mixed = average_checkpoints([a, c])[1]
    assert mixed.teacher is None
    assert [s["teacher"]["name"] for s in mixed.extra["averaged_from"]] == ["sam", "grabcut"]


def test_average_models_refuses_to_overwrite_a_source(tmp_path: Path) -> None:
    a, b = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    before = (a / "model.safetensors").read_bytes()
    with pytest.raises(ModelError, match="one of the models being averaged"):
        average_models([a, b], tmp_path / "a")
    assert (a / "model.safetensors").read_bytes() == before


def test_average_models_writes_a_loadable_model_folder(tmp_path: Path) -> None:
    a, b = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    folder = average_models([a, b], tmp_path / "soup")
    model, card = load_checkpoint(folder)
    assert card.arch == ARCH and len(card.extra["averaged_from"]) == 2
    assert card.created  # the saved card has its own time stamp
    assert load_card(folder).input_size == (64, 64)


def test_cli_average(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    with pytest.raises(SystemExit) as done:
        main(["average", str(a), str(b), "--out", str(tmp_path / "soup"), "--weights", "1,3"])
    assert done.value.code == 0
    assert "the mean of 2 models" in capsys.readouterr().out
    assert [s["weight"] for s in load_card(tmp_path / "soup").extra["averaged_from"]] == [0.25, 0.75]
    with pytest.raises(SystemExit) as bad:
        main(["average", str(a), str(b), "--out", str(tmp_path / "x"), "--weights", "one,two"])
    assert bad.value.code != 0
    assert "--weights" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        main(["average", str(a), str(tmp_path / "nope"), "--out", str(tmp_path / "y")])
    assert missing.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and err.count("\n") == 1  # one line naming the folder


def test_a_mean_of_means_keeps_the_lineage_not_the_nested_cards(tmp_path: Path) -> None:
    a, b, c = (_save(tmp_path / n, i) for i, n in enumerate("abc"))
    ab = average_models([a, b], tmp_path / "ab", [3, 1])
    abc = average_models([ab, c], tmp_path / "abc")
    abcd = average_models([abc, _save(tmp_path / "d", 3)], tmp_path / "abcd")
    top = load_card(abcd).extra["averaged_from"]
    # a direct source that is a plain run keeps its full record
    assert top[1]["run"] == "d" and top[1]["extra"] == {"epochs": 3} and top[1]["metrics"]
    # a direct source that is a mean keeps the whole tree of runs and weights, cut to names
    tree = top[0]["extra"]["averaged_from"]
    assert [s["run"] for s in tree] == ["ab", "c"]
    assert tree[1] == {"run": "c", "weight": 0.5, "name": "run2", "data_fingerprint": "sha256:data"}
    assert [(s["run"], s["weight"]) for s in tree[0]["averaged_from"]] == [("a", 0.75), ("b", 0.25)]
    assert all(set(s) <= {"run", "weight", "name", "data_fingerprint"} for s in tree[0]["averaged_from"])
    # the nested runs' own records (here ``epochs``) stay in their folders, out of this card
    text = (abcd / "card.json").read_text()
    assert text.count('"epochs"') == 1 and text.count('"val_iou"') == 1
