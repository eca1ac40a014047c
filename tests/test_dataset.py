"""Tests of okrainsight.dataset: layout, manifest, check (every planted defect), grouped split, CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from okrainsight.cli import app, main
from okrainsight.dataset import (
    DEFAULT_GROUP_REGEX,
    DatasetLayout,
    append_manifest,
    assign_groups,
    check_dataset,
    group_keys,
    latest_manifest_by_stem,
    load_labels,
    load_prompts,
    read_manifest,
    read_split,
    save_prompts,
    split_dataset,
)
from okrainsight.errors import ConfigError, DatasetError
from okrainsight.imageio import write_image, write_mask, write_soft

W, H = 32, 24


def add_sample(root: Path, stem: str, ext: str = ".png", *, mask: bool = True, soft: bool = False) -> None:
    layout = DatasetLayout(root)
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :, 1] = 150
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(layout.images_dir / f"{stem}{ext}")
    m = np.zeros((H, W), bool)
    m[4:12, 6:20] = True
    if mask:
        write_mask(layout.mask_path(stem), m)
    if soft:
        write_soft(layout.soft_path(stem), m * 0.9)


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for stem in ("okra_1_a", "okra_1_b", "okra_2_a", "okra_3_a"):
        add_sample(root, stem, soft=True)
    layout = DatasetLayout(root)
    save_prompts(layout.prompts_path, {"okra_1_a": {"points": [[5, 6]], "labels": [1], "box": None}})
    layout.labels_path.write_text("stem,grade\nokra_1_a,tender\nokra_2_a,tough\n")
    append_manifest(layout.manifest_path, {"stem": "okra_1_a", "teacher": "sam", "score": 0.9})
    return root


def kinds(root: Path) -> list[tuple[str, str]]:
    return [(d.kind, d.stem) for d in check_dataset(root)]


# ---------------------------------------------------------------------------------- check


def test_clean_dataset_has_no_defects(clean: Path) -> None:
    assert check_dataset(clean) == []


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        check_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="images/"):
        check_dataset(tmp_path / "empty")


def test_image_without_mask(clean: Path) -> None:
    add_sample(clean, "okra_9", mask=False)
    assert kinds(clean) == [("missing-mask", "okra_9")]


def test_orphan_mask_and_soft(clean: Path) -> None:
    write_mask(clean / "masks" / "ghost.png", np.zeros((H, W), bool))
    write_soft(clean / "soft" / "phantom.png", np.zeros((H, W)))
    assert kinds(clean) == [("orphan-mask", "ghost"), ("orphan-soft", "phantom")]


def test_size_mismatch(clean: Path) -> None:
    write_mask(clean / "masks" / "okra_2_a.png", np.zeros((H + 1, W), bool))
    write_soft(clean / "soft" / "okra_3_a.png", np.zeros((H, W - 2)))
    defects = check_dataset(clean)
    assert [(d.kind, d.stem) for d in defects] == [
        ("size-mismatch", "okra_2_a"),
        ("soft-size-mismatch", "okra_3_a"),
    ]
    assert (
        f"{W}x{H + 1}" in defects[0].message and str(clean / "masks" / "okra_2_a.png") in defects[0].message
    )


def test_size_checked_after_exif_orientation(clean: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored W x H, shown H x W
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(clean / "images" / "turned.jpg", exif=exif.tobytes())
    write_mask(clean / "masks" / "turned.png", np.zeros((W, H), bool))  # oriented size: fine
    assert kinds(clean) == []
    write_mask(clean / "masks" / "turned.png", np.zeros((H, W), bool))  # stored size: wrong
    assert kinds(clean) == [("size-mismatch", "turned")]


def test_non_binary_and_wrong_format_mask(clean: Path) -> None:
    grey = np.zeros((H, W), np.uint8)
    grey[0, :5] = [0, 1, 128, 254, 255]
    Image.fromarray(grey, mode="L").save(clean / "masks" / "okra_1_b.png")
    rgb = np.zeros((H, W, 3), np.uint8)
    Image.fromarray(rgb).save(clean / "masks" / "okra_2_a.png")
    defects = check_dataset(clean)
    assert [(d.kind, d.stem) for d in defects] == [
        ("mask-format", "okra_2_a"),
        ("non-binary-mask", "okra_1_b"),
    ]
    assert "1, 128, 254" in defects[1].message


def test_unreadable_image_and_mask(clean: Path) -> None:
    (clean / "images" / "okra_5.jpg").write_bytes(b"\xff\xd8\xff broken")
    write_mask(clean / "masks" / "okra_5.png", np.zeros((H, W), bool))
    (clean / "masks" / "okra_1_b.png").write_bytes(b"")
    data = (clean / "images" / "okra_3_a.png").read_bytes()
    (clean / "images" / "okra_3_a.png").write_bytes(data[: len(data) // 2])
    defects = check_dataset(clean)
    found = [(d.kind, d.stem) for d in defects]
    assert found == [
        ("unreadable-image", "okra_3_a"),
        ("unreadable-image", "okra_5"),
        ("unreadable-mask", "okra_1_b"),
    ]
    assert all(str(d.path) in d.message for d in defects)


def test_duplicate_stems(clean: Path) -> None:
    add_sample(clean, "okra_2_a", ext=".jpg", mask=False)
    defects = check_dataset(clean)
    assert [(d.kind, d.stem) for d in defects] == [("duplicate-stem", "okra_2_a")]
    assert "okra_2_a.jpg" in defects[0].message and "okra_2_a.png" in defects[0].message


def test_stray_files(clean: Path) -> None:
    (clean / "images" / "notes.txt").write_text("hi")
    (clean / "images" / ".DS_Store").write_bytes(b"x")  # hidden: ignored
    (clean / "masks" / "okra_1_a.jpg").write_bytes(b"x")
    assert kinds(clean) == [("stray-file", "notes"), ("stray-file", "okra_1_a")]


def test_bad_prompts(clean: Path) -> None:
    prompts = {
        "okra_1_a": {"points": [[5, 6]], "labels": [1], "box": None},
        "okra_1_b": {"points": [[1, 2, 3]], "labels": [1]},
        "okra_2_a": {"points": [[5, 6]], "labels": [2]},
        "okra_3_a": {"points": [[W + 50, 3]], "labels": [1]},
        "nobody": {"points": [[1, 1]], "labels": [1]},
        "okra_2_b": "not an object",
    }
    (clean / "prompts.json").write_text(json.dumps(prompts))
    assert kinds(clean) == [
        ("bad-prompts", "okra_1_b"),
        ("bad-prompts", "okra_2_a"),
        ("bad-prompts", "okra_2_b"),
        ("bad-prompts", "okra_3_a"),
        ("prompt-unknown-stem", "nobody"),
    ]
    (clean / "prompts.json").write_text("{ not json")
    assert kinds(clean) == [("bad-prompts", "")]
    (clean / "prompts.json").write_text("[1, 2]")
    assert kinds(clean) == [("bad-prompts", "")]


def test_bad_labels(clean: Path) -> None:
    (clean / "labels.csv").write_text(
        "stem,grade\nokra_1_a,tender\nokra_1_a,tough\nokra_2_a,mushy\n,tender\nghost,tough\n"
    )
    assert kinds(clean) == [
        ("bad-labels", ""),
        ("bad-labels", "okra_1_a"),
        ("bad-labels", "okra_2_a"),
        ("label-unknown-stem", "ghost"),
    ]
    (clean / "labels.csv").write_text("name,quality\nokra_1_a,tender\n")
    assert kinds(clean) == [("bad-labels", "")]
    with pytest.raises(DatasetError, match="header"):
        load_labels(clean / "labels.csv")


def test_bad_manifest_lines(clean: Path) -> None:
    with open(clean / "manifest.jsonl", "a") as fh:
        fh.write('not json\n[1, 2]\n{"teacher": "sam"}\n\n')
    defects = check_dataset(clean)
    assert [d.kind for d in defects] == ["bad-manifest"] * 3
    assert [d.message.split(": ")[0].rsplit(":", 1)[1] for d in defects] == ["2", "3", "4"]


def test_torn_manifest_reported_tolerated_and_repaired(clean: Path) -> None:
    manifest = clean / "manifest.jsonl"
    with open(manifest, "ab") as fh:
        fh.write(b'{"stem": "okra_2_a", "sco')  # crash mid-write
    assert kinds(clean) == [("torn-manifest", "")]
    assert [r["stem"] for r in read_manifest(manifest)] == ["okra_1_a"]  # tolerated
    check_dataset(clean, repair=True)
    assert manifest.read_bytes().endswith(b"}\n")
    assert kinds(clean) == []
    # append after a torn line also repairs it
    with open(manifest, "ab") as fh:
        fh.write(b'{"stem": "ok')
    append_manifest(manifest, {"stem": "okra_3_a", "score": 0.5})
    assert [r["stem"] for r in read_manifest(manifest)] == ["okra_1_a", "okra_3_a"]
    assert latest_manifest_by_stem(manifest)["okra_3_a"]["score"] == 0.5
    assert kinds(clean) == []


def test_bad_groups_csv(clean: Path) -> None:
    (clean / "groups.csv").write_text("stem,group\nokra_1_a,A\nghost,B\nokra_2_a,\n")
    assert kinds(clean) == [("bad-groups", ""), ("bad-groups", "ghost")]


def test_every_defect_at_once(clean: Path) -> None:
    add_sample(clean, "nomask", mask=False)
    write_mask(clean / "masks" / "orphan.png", np.zeros((H, W), bool))
    write_mask(clean / "masks" / "okra_3_a.png", np.zeros((5, 5), bool))
    add_sample(clean, "okra_1_a", ext=".jpg", mask=False)
    found = {d.kind for d in check_dataset(clean)}
    assert found == {"missing-mask", "orphan-mask", "size-mismatch", "duplicate-stem"}


def test_prompts_and_labels_loaders(clean: Path) -> None:
    prompts = load_prompts(clean / "prompts.json")
    assert prompts == {"okra_1_a": {"points": [[5.0, 6.0]], "labels": [1], "box": None}}
    assert load_labels(clean / "labels.csv") == {"okra_1_a": "tender", "okra_2_a": "tough"}


# ---------------------------------------------------------------------------------- split


@pytest.mark.parametrize(
    ("stem", "group"),
    [
        ("okra_12_tipbreak_int1", "okra_12"),
        ("okra_12_tipbend_int1", "okra_12"),
        ("white_04_bunch", "white_04"),
        ("okra7b", "okra7"),
        ("plain", "plain"),
        ("IMG_1234", "IMG_1234"),
    ],
)
def test_default_group_regex(tmp_path: Path, stem: str, group: str) -> None:
    assert DEFAULT_GROUP_REGEX
    assert group_keys(tmp_path, [stem]) == {stem: group}


def test_group_regex_option_and_groups_csv(tmp_path: Path) -> None:
    stems = ["2024-05-01_okra_a_left", "2024-05-01_okra_a_right", "2024-05-01_okra_b_left", "x"]
    keys = group_keys(tmp_path, stems, group_regex=r"^\d{4}-\d\d-\d\d_(okra_[a-z])")
    assert keys == {
        "2024-05-01_okra_a_left": "okra_a",
        "2024-05-01_okra_a_right": "okra_a",
        "2024-05-01_okra_b_left": "okra_b",
        "x": "x",
    }
    (tmp_path / "groups.csv").write_text("stem,group\nx,okra_a\n")
    assert group_keys(tmp_path, stems, group_regex=r"^\d{4}-\d\d-\d\d_(okra_[a-z])")["x"] == "okra_a"
    (tmp_path / "groups.csv").write_text("stem,pod\nx,p1\n")
    assert group_keys(tmp_path, ["x"], group_column="pod") == {"x": "p1"}
    with pytest.raises(DatasetError, match="columns"):
        group_keys(tmp_path, ["x"])
    with pytest.raises(ConfigError, match="capture group"):
        group_keys(tmp_path, ["x"], group_regex="okra", group_column="pod")
    with pytest.raises(ConfigError, match="not a valid"):
        group_keys(tmp_path, ["x"], group_regex="(", group_column="pod")


def test_synthetic_scenes_are_their_own_groups(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "synth"
    for i in range(10):
        add_sample(root, f"synth_0_{i:06d}", mask=False)
    # without provenance the default regex lumps them into one group 'synth_0'
    lumped = split_dataset(root)
    assert set(lumped.groups.values()) == {"synth_0"}
    assert lumped.splits["val"] == [] and "is empty" in caplog.text
    for i in range(10):
        append_manifest(root / "manifest.jsonl", {"stem": f"synth_0_{i:06d}", "source": "synth"})
    result = split_dataset(root)
    assert len(set(result.groups.values())) == 10
    assert [len(v) for v in result.splits.values()] == [8, 1, 1]
    # an explicit regex still wins
    assert set(split_dataset(root, group_regex=r"^(synth_\d+)").groups.values()) == {"synth_0"}


def make_pairs(root: Path, n_okra: int) -> None:
    for i in range(n_okra):
        for pose in ("tipbreak", "tipbend"):
            add_sample(root, f"okra_{i}_{pose}_int1", mask=False)


def test_split_writes_files_grouped_and_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_pairs(root, 20)
    result = split_dataset(root, (0.8, 0.1, 0.1), seed=3)
    lists = {name: read_split(root, name) for name in ("train", "val", "test")}
    assert lists == result.splits
    assert [len(v) for v in lists.values()] == [32, 4, 4]
    all_stems = sum(lists.values(), [])
    assert sorted(all_stems) == sorted(DatasetLayout(root).stems())
    for i in range(20):
        homes = {name for name, stems in lists.items() if f"okra_{i}_tipbreak_int1" in stems}
        homes2 = {name for name, stems in lists.items() if f"okra_{i}_tipbend_int1" in stems}
        assert homes == homes2 and len(homes) == 1
    first = {n: (root / "splits" / f"{n}.txt").read_bytes() for n in lists}
    split_dataset(root, (0.8, 0.1, 0.1), seed=3)
    assert {n: (root / "splits" / f"{n}.txt").read_bytes() for n in lists} == first
    other = split_dataset(root, (0.8, 0.1, 0.1), seed=4)
    assert other.splits != result.splits
    assert [p.name for p in (root / "splits").iterdir() if p.name.startswith(".")] == []


def test_split_tiny_dataset_fills_every_split(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_pairs(root, 3)
    result = split_dataset(root)
    assert all(len(v) == 2 for v in result.splits.values())


def test_split_errors(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        split_dataset(root)
    add_sample(root, "a1")
    with pytest.raises(ConfigError):
        split_dataset(root, (0.5, 0.5, 0.5))
    with pytest.raises(DatasetError, match="does not exist"):
        read_split(root, "train")
    with pytest.raises(DatasetError, match="unknown split"):
        read_split(root, "dev")


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=30),
    val=st.floats(0.0, 0.4),
    test=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**31),
)
def test_property_groups_never_straddle(sizes: list[int], val: float, test: float, seed: int) -> None:
    groups = {f"g{g}_pose{k}": f"g{g}" for g, n in enumerate(sizes) for k in range(n)}
    splits = assign_groups(groups, (1 - val - test, val, test), seed)
    where: dict[str, set[str]] = {}
    for name, stems in splits.items():
        for s in stems:
            where.setdefault(groups[s], set()).add(name)
    assert all(len(v) == 1 for v in where.values())
    assert sorted(sum(splits.values(), [])) == sorted(groups)
    for name, frac in (("val", val), ("test", test)):
        if frac == 0:
            assert splits[name] == []
    assert splits == assign_groups(dict(reversed(list(groups.items()))), (1 - val - test, val, test), seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_okra=st.integers(1, 8), poses=st.integers(1, 3), seed=st.integers(0, 1000))
def test_property_split_files_group_by_default_regex(
    tmp_path: Path, n_okra: int, poses: int, seed: int
) -> None:
    root = tmp_path / f"d{n_okra}_{poses}_{seed}"
    (root / "images").mkdir(parents=True)
    for i in range(n_okra):
        for k in range(poses):
            (root / "images" / f"okra_{i}_pose{k}.png").write_bytes(b"x")  # split needs names only
    split_dataset(root, seed=seed)
    for i in range(n_okra):
        homes = [
            n
            for n in ("train", "val", "test")
            if any(s.startswith(f"okra_{i}_") for s in read_split(root, n))
        ]
        assert len(homes) == 1


# ---------------------------------------------------------------------------------- CLI


def test_cli_check_table_json_and_exit_codes(clean: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["dataset", "check", str(clean)])
    assert ok.exit_code == 0, ok.output
    assert "4 images checked, no defects" in ok.output
    add_sample(clean, "okra_9", mask=False)
    write_mask(clean / "masks" / "lost.png", np.zeros((H, W), bool))
    bad = runner.invoke(app, ["dataset", "check", str(clean)], terminal_width=200)
    assert bad.exit_code == 1
    assert "missing-mask" in bad.output and "orphan-mask" in bad.output and "2 defects" in bad.output
    js = runner.invoke(app, ["dataset", "check", str(clean), "--json"])
    assert js.exit_code == 1
    records = json.loads(js.stdout)
    assert [(r["kind"], r["stem"]) for r in records] == [("missing-mask", "okra_9"), ("orphan-mask", "lost")]
    assert set(records[0]) == {"stem", "path", "kind", "message"}


def test_cli_split(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_pairs(root, 10)
    result = CliRunner().invoke(
        app, ["dataset", "split", str(root), "--val", "0.2", "--test", "0.2", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert [len(read_split(root, n)) for n in ("train", "val", "test")] == [12, 4, 4]
    custom = CliRunner().invoke(app, ["dataset", "split", str(root), "--group-regex", r"^okra_\d+_(\w+?)_"])
    assert custom.exit_code == 0, custom.output
    # grouping by pose puts all tipbreak photos together
    homes = [n for n in ("train", "val", "test") if any("tipbreak" in s for s in read_split(root, n))]
    assert len(homes) == 1
    bad = CliRunner().invoke(app, ["dataset", "split", str(root), "--val", "0.5", "--test", "0.5"])
    assert bad.exit_code == 2


def test_cli_help_examples() -> None:
    runner = CliRunner()
    for args in (["dataset", "--help"], ["dataset", "check", "--help"], ["dataset", "split", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Example:" in result.output


def test_main_missing_dataset_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["okra", "dataset", "check", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("okra: error:") and "nowhere" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_write_image_dataset_image_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_image(root / "images" / "s_1.jpg", np.zeros((H, W, 3), np.uint8))
    write_mask(root / "masks" / "s_1.png", np.ones((H, W), bool))
    assert check_dataset(root) == []
