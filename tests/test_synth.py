"""Tests of the okra scene renderer (``okrainsight.synth`` and ``okra synth``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from PIL import Image

from okrainsight.cli import main
from okrainsight.dataset import DatasetLayout, load_labels, load_prompts, read_manifest
from okrainsight.errors import ConfigError
from okrainsight.imageio import read_image, read_mask
from okrainsight.synth import KINDS, render_dataset, render_scene
from okrainsight.synth.distractors import DISTRACTORS
from okrainsight.synth.scenes import render_lookalike_scene

SIZE = (192, 144)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _rasterise_outline(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Independent rasterisation: pixel centres inside the outline polygon (point in polygon),
    tested only within the polygon's bounding box (every pixel outside it is outside)."""
    h, w = shape
    out = np.zeros((h, w), bool)
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int), 0)
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 1
    x1, y1 = min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = MplPath(poly).contains_points(np.stack([xx.ravel(), yy.ravel()], axis=1))
    out[y0:y1, x0:x1] = inside.reshape(y1 - y0, x1 - x0)
    return out


@pytest.mark.parametrize("kind", ["white", "pile", "plant", None])
def test_same_seed_gives_identical_arrays(kind: str | None) -> None:
    a = render_scene(7, SIZE, kind)
    b = render_scene(7, SIZE, kind)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.instances, b.instances)
    assert a.pods == b.pods
    c = render_scene(8, SIZE, kind)
    assert not np.array_equal(a.image, c.image)


def test_scene_arrays_follow_the_contract() -> None:
    for seed, kind in enumerate(KINDS):
        s = render_scene(seed, SIZE, kind)
        assert s.kind == kind
        assert s.image.shape == (SIZE[1], SIZE[0], 3) and s.image.dtype == np.uint8
        assert s.mask.shape == SIZE[::-1] and s.mask.dtype == np.uint8
        assert set(np.unique(s.mask)) <= {0, 255}
        assert s.instances.dtype == np.uint16
        assert np.array_equal(s.mask > 0, s.instances > 0)


def test_random_scenes_keep_pods_instances_and_mask_consistent() -> None:
    """Many small random scenes: ids 1..n present, mask = instances > 0, distractors outside it."""
    for seed in range(60):
        s = render_scene(1000 + seed, (96, 72))
        ids = set(np.unique(s.instances).tolist()) - {0}
        assert ids == {p["id"] for p in s.pods} == set(range(1, len(s.pods) + 1))
        assert np.array_equal(s.mask > 0, s.instances > 0)
        assert not (s.mask.astype(bool) & s.distractor_mask).any()
        if s.kind == "negative":
            assert not s.pods


@pytest.mark.parametrize("seed", range(6))
def test_white_mask_matches_independent_rasterisation(seed: int) -> None:
    for include_stem in (False, True):
        s = render_scene(seed, (256, 192), "white", include_stem=include_stem)
        assert len(s.pods) == 1 and len(s.tubes) == 1
        tube = s.tubes[0]
        start = None if include_stem else -tube.cap_len
        ref = _rasterise_outline(tube.outline(start, samples=800), s.mask.shape)
        assert ref.sum() > 200
        assert _iou(s.mask > 0, ref) >= 0.98, (seed, include_stem)
        # The whole pod is framed on white: nothing of it touches the border.
        assert (
            not s.mask[0].any()
            and not s.mask[-1].any()
            and not s.mask[:, 0].any()
            and not s.mask[:, -1].any()
        )


def test_stem_enters_the_mask_only_when_asked() -> None:
    for seed in range(10):
        without = render_scene(seed, (256, 192), "white")
        with_stem = render_scene(seed, (256, 192), "white", include_stem=True)
        assert (with_stem.mask >= without.mask).all()
        if without.tubes[0].stem_len > 3:
            assert with_stem.mask.sum() > without.mask.sum()
            return
    pytest.fail("no pod with a stem among ten white scenes")


def test_occluded_pods_lose_pixels_and_pods_match_instances() -> None:
    occluded = 0
    ratios: list[float] = []
    for seed in range(6):
        s = render_scene(seed, SIZE, "pile")
        ids = set(np.unique(s.instances)) - {0}
        assert ids == {p["id"] for p in s.pods} == set(range(1, len(s.pods) + 1))
        for pod, tube in zip(s.pods, s.tubes, strict=True):
            ys, xs = np.nonzero(s.instances == pod["id"])
            assert pod["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert pod["area_px"] == len(xs)
            full = _rasterise_outline(tube.outline(-tube.cap_len, samples=600), s.mask.shape)
            if "end_disc" in tube.meta:  # a pod seen cap-first also shows the face of its calyx
                cx, cy, a, b, tx, ty = tube.meta["end_disc"]
                phi = np.linspace(0, 2 * np.pi, 200)
                ell = np.stack(
                    [
                        cx + a * np.cos(phi) * -ty + b * np.sin(phi) * tx,
                        cy + a * np.cos(phi) * tx + b * np.sin(phi) * ty,
                    ],
                    axis=1,
                )
                full |= _rasterise_outline(ell, s.mask.shape)
            visible = s.instances == pod["id"]
            # Visible pixels are (up to edge pixels) a subset of the pod's own silhouette.
            assert (visible & ~full).sum() <= 0.03 * visible.sum() + 4
            if visible.sum() < 0.9 * full.sum():
                occluded += 1
            # v20: pile pods are culled where pods in front hide them; their visible fraction,
            # from the filled outline, still matches the independent point-in-outline count's
            if full.sum() >= 40:
                ratios.append(pod["visible_fraction"] / (visible.sum() / full.sum()))
            for x, y in pod["axis_points"]:
                assert s.instances[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))] == pod["id"]
            assert 5 <= pod["ridges"] <= 8 and 0 <= pod["age"] <= 1
            assert pod["tender"] == (pod["age"] < 0.5)
    assert occluded > 0
    # to a few percent as a rule; a sliver of a pod grazing the frame's edge may be off by a fifth
    assert 0.95 < np.median(ratios) < 1.05 and min(ratios) > 0.7 and max(ratios) < 1.4


def test_length_px_is_the_projected_centreline_length() -> None:
    """``length_px`` (cap + body as seen in the image) equals the drawn centreline's arc length,
    also for pods seen cap-first (whose projection is foreshortened exactly once)."""
    tilted = 0
    for seed in range(4):
        s = render_scene(seed, SIZE, "pile")
        for pod, tube in zip(s.pods, s.tubes, strict=True):
            pts = tube.point_at(np.linspace(-tube.cap_len, tube.s_end, 400))
            arc = float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum())
            assert pod["length_px"] == pytest.approx(arc, rel=0.02)
            tilted += pod["tilt"] > 0
    assert tilted > 0


def test_shop_scenes_show_several_large_pods() -> None:
    """``shop``: 2-5 large pods on white, the okra covering a good share of the frame."""
    fractions = []
    for seed in range(8):
        s = render_scene(seed, SIZE, "shop")
        assert 1 <= len(s.pods) <= 5
        fractions.append((s.mask > 0).mean())
    assert np.median(fractions) > 0.1
    assert max(len(render_scene(seed, SIZE, "shop").pods) for seed in range(8)) >= 2


def test_distractors_never_enter_the_mask() -> None:
    seen = 0
    for seed in range(12):
        s = render_scene(seed, SIZE, None)
        assert not (s.mask.astype(bool) & s.distractor_mask).any()
        seen += int(s.distractor_mask.sum())
    assert seen > 1000


@pytest.mark.parametrize("name", sorted(DISTRACTORS))
def test_every_lookalike_draws_pixels_deterministically(name: str) -> None:
    """Each distractor (leeks and asparagus included) shows up and renders the same for a seed."""
    image, mask = render_lookalike_scene(3, SIZE, name, count=3)
    again, mask2 = render_lookalike_scene(3, SIZE, name, count=3)
    assert np.array_equal(image, again) and np.array_equal(mask, mask2)
    assert mask.sum() > 100
    # Drawn over the backdrop: the look-alike's pixels differ from the scene without it.
    other, _ = render_lookalike_scene(4, SIZE, name, count=3)
    assert not np.array_equal(image, other)


def test_leek_runs_from_a_dark_leaf_to_a_pale_shank() -> None:
    from okrainsight.synth.distractors import leek
    from okrainsight.synth.shading import Light

    light = Light(direction=np.array([0.3, -0.4, 0.87]), colour=np.ones(3, np.float32), ambient=0.35)
    rng = np.random.default_rng(0)
    sprite = leek(rng, (200.0, 100.0), 0.0, 200.0, light, (400, 200))
    assert sprite is not None and sprite.okra is None
    cols = np.flatnonzero(sprite.cover.any(axis=0))
    lum = sprite.rgb.mean(axis=2)
    left = lum[:, cols[: len(cols) // 5]][sprite.cover[:, cols[: len(cols) // 5]]].mean()
    right = lum[:, cols[-len(cols) // 5 :]][sprite.cover[:, cols[-len(cols) // 5 :]]].mean()
    assert right > left + 0.15  # angle 0: the leaf end is on the left, the root end on the right


def test_cucumbers_come_dark_and_pale() -> None:
    """v8: pale, cream-striped cucumbers too (a real heap of them was called okra)."""
    from okrainsight.synth.distractors import cucumber
    from okrainsight.synth.shading import Light

    light = Light(direction=np.array([0.3, -0.4, 0.87]), colour=np.ones(3, np.float32), ambient=0.35)
    values = []
    for seed in range(30):
        sprite = cucumber(np.random.default_rng(seed), (100.0, 60.0), 0.3, 80.0, light, (200, 120))
        if sprite is not None and sprite.kind == "cucumber":
            values.append(float(np.median(sprite.rgb.max(axis=2)[sprite.cover])))
    assert len(values) >= 10
    assert min(values) < 0.35 and sum(v > 0.5 for v in values) >= 3


@pytest.mark.parametrize("name", ["bean", "cucumber", "leek"])
def test_lookalike_heaps_fill_the_frame_like_okra_piles(name: str) -> None:
    """v8: market heaps of one look-alike cover the frame edge to edge (not okra either)."""
    from okrainsight.synth.scenes import HEAP_AREA, _heap
    from okrainsight.synth.shading import Light

    assert set(HEAP_AREA) >= {"bean", "chilli", "pea_pod", "cucumber", "gourd", "leek", "asparagus"}
    light = Light(direction=np.array([0.3, -0.4, 0.87]), colour=np.ones(3, np.float32), ambient=0.35)
    w, h = 128, 96
    for seed in range(3):
        sprites = _heap(np.random.default_rng(seed), name, (w, h), light)
        covered = np.zeros((h, w), bool)
        for sp in sprites:
            assert sp.okra is None and sp.kind in (name, "zucchini")
            ch, cw = sp.cover.shape
            y1, x1 = min(sp.y0 + ch, h), min(sp.x0 + cw, w)
            y0, x0 = max(sp.y0, 0), max(sp.x0, 0)
            covered[y0:y1, x0:x1] |= sp.cover[y0 - sp.y0 : y1 - sp.y0, x0 - sp.x0 : x1 - sp.x0]
        assert covered.mean() > 0.75, (name, seed, covered.mean())


def test_cloth_spans_dark_muted_dyes_and_coarse_weaves() -> None:
    """v8: real pods on plain dark or olive cloth were missed, so textiles cover those too."""
    from okrainsight.synth.scenes import _bg_cloth

    cloths = [np.clip(_bg_cloth(np.random.default_rng(s), 96, 128), 0, 1) for s in range(80)]
    value = np.array([c.max(axis=2).mean() for c in cloths])
    sat = np.array([((c.max(axis=2) - c.min(axis=2)) / (c.max(axis=2) + 1e-6)).mean() for c in cloths])
    assert ((value < 0.45) & (sat < 0.6)).mean() >= 0.1  # dark, muted
    assert (value > 0.7).mean() >= 0.2  # and light ones still
    # fine texture (burlap, linen, the weave): high-pass energy varies widely between cloths
    fine = np.array(
        [np.abs(c.mean(axis=2) - cv2.GaussianBlur(c.mean(axis=2), (0, 0), 2)).mean() for c in cloths]
    )
    assert fine.max() > 4 * np.median(fine)


def test_bunches_lie_on_white_and_on_other_surfaces() -> None:
    corners = []
    for seed in range(24):
        img = render_scene(seed, (96, 72), "bunch").image.astype(np.float32) / 255
        corners.append(np.concatenate([img[:6, :6], img[:6, -6:], img[-6:, :6], img[-6:, -6:]]).mean())
    corners_arr = np.array(corners)
    # white backdrops (bright corners) and cloth, wood or paper (darker corners) both common
    assert (corners_arr > 0.8).mean() >= 0.2 and (corners_arr < 0.55).mean() >= 0.2


def test_negative_scenes_have_empty_masks_but_content() -> None:
    for seed in range(6):
        s = render_scene(seed, SIZE, "negative")
        assert s.mask.max() == 0 and s.instances.max() == 0 and s.pods == []
        assert s.distractor_mask.sum() > 50


def test_tender_pods_look_younger() -> None:
    young, old = [], []
    for seed in range(40):
        s = render_scene(seed, (128, 96), "white")
        hsv = cv2.cvtColor(s.image, cv2.COLOR_RGB2HSV)
        sat = float(hsv[..., 1][s.mask > 0].mean())
        (young if s.pods[0]["tender"] else old).append((sat, s.pods[0]["length_px"]))
    assert young and old
    assert np.mean([v[0] for v in young]) > np.mean([v[0] for v in old])
    assert np.mean([v[1] for v in young]) < np.mean([v[1] for v in old])


def _check_dataset(root: Path, n: int) -> list[dict]:
    layout = DatasetLayout(root).require()
    stems = layout.stems()
    assert len(stems) == n
    records = {r["stem"]: r for r in read_manifest(layout.manifest_path)}
    assert set(records) == set(stems)
    for stem in stems:
        img = read_image(layout.image_path(stem))
        mask = read_mask(layout.mask_path(stem))
        raw = np.asarray(Image.open(layout.mask_path(stem)))
        assert set(np.unique(raw)) <= {0, 255}
        assert img.shape[:2] == mask.shape
        inst = cv2.imread(str(root / "instances" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert inst.dtype == np.uint16 and np.array_equal(inst > 0, mask > 0)
        rec = records[stem]
        assert rec["source"] == "synth" and rec["renderer"]
        assert len(rec["pods"]) == len(set(np.unique(inst)) - {0})
    return [records[s] for s in stems]


def test_kinds_named_twice_are_drawn_twice_as_often(tmp_path: Path) -> None:
    """``--kinds`` draws one entry per rendered scene, so repeating a kind weights the mix (the default
    model's plant- and pile-heavy step renders ``plant,plant,plant,pile,pile,pile,...``)."""
    kinds = ["white"] * 3 + ["paper"]
    out = render_dataset(tmp_path / "ds", 120, 5, (48, 36), workers=1, kinds=kinds, progress=False)
    counts = {k: 0 for k in ("white", "paper")}
    for rec in read_manifest(out / "manifest.jsonl"):
        counts[rec["kind"]] += 1
    assert sum(counts.values()) == 120
    # 90:30 expected (binomial sd 4.7); a ratio outside 1.8-6 has under a 1% chance for any seed,
    # while equal weights (60:60) would give about 1
    assert counts["paper"] > 0 and 1.8 <= counts["white"] / counts["paper"] <= 6


def test_dataset_is_deterministic_across_worker_counts(tmp_path: Path) -> None:
    a = render_dataset(tmp_path / "a", 6, 3, (128, 96), workers=1, progress=False)
    b = render_dataset(tmp_path / "b", 6, 3, (128, 96), workers=2, progress=False)
    recs = _check_dataset(a, 6)
    _check_dataset(b, 6)
    for name in sorted((a / "images").iterdir()):
        for sub in ("images", "masks", "instances"):
            fa = next((a / sub).glob(name.stem + ".*"))
            fb = b / sub / fa.name
            assert fa.read_bytes() == fb.read_bytes(), fa
    prompts = load_prompts(a / "prompts.json")
    labels = load_labels(a / "labels.csv")
    for rec in recs:
        stem = rec["stem"]
        # a pod with a visible axis gets prompts (a speck of a pod at the frame's edge has none)
        if any(len(p.get("axis_points") or []) >= 2 for p in rec["pods"]):
            assert len(prompts[stem]["points"]) == 2
            mask = read_mask(a / "masks" / f"{stem}.png")
            for x, y in prompts[stem]["points"]:
                assert mask[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))] == 255
        else:
            assert stem not in prompts
        if len(rec["pods"]) == 1:
            assert labels[stem] == ("tender" if rec["pods"][0]["tender"] else "tough")
        else:
            assert stem not in labels
    # Resuming into the same folder renders nothing new and keeps the files.
    before = (a / "manifest.jsonl").read_bytes()
    render_dataset(a, 6, 3, (128, 96), workers=1, progress=False)
    assert (a / "manifest.jsonl").read_bytes() == before


def _photo_folder(root: Path, bad: bool = True) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        arr = (rng.random((60 + 10 * i, 90, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"photo{i}.{'png' if i % 2 else 'jpg'}")
    if bad:
        (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    return root


def test_backgrounds_and_negatives_from_any_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    photos = _photo_folder(tmp_path / "photos")
    with caplog.at_level(logging.WARNING):
        out = render_dataset(
            tmp_path / "ds",
            8,
            0,
            (96, 64),
            workers=1,
            backgrounds=photos,
            negatives=photos,
            negative_fraction=0.4,
            background_fraction=1.0,
            progress=False,
        )
    lines = [r.getMessage() for r in caplog.records if "broken.jpg" in r.getMessage()]
    assert lines and all("\n" not in line for line in lines)
    recs = _check_dataset(out, 8)
    kinds = {r["kind"] for r in recs}
    assert "real-negative" in kinds
    assert kinds & {"photo", "negative"}
    for r in recs:
        if r["kind"] == "real-negative":
            assert read_mask(out / "masks" / f"{r['stem']}.png").max() == 0


def test_folder_without_readable_images_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="no readable image"):
        render_dataset(tmp_path / "ds", 2, 0, (64, 48), workers=1, negatives=bad, progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        render_dataset(
            tmp_path / "ds", 2, 0, (64, 48), workers=1, backgrounds=tmp_path / "nope", progress=False
        )


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = _photo_folder(tmp_path / "photos")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "synth",
                str(tmp_path / "out"),
                "--n",
                "3",
                "--seed",
                "1",
                "--size",
                "96x64",
                "--workers",
                "1",
                "--kinds",
                "white,negative",
                "--negatives",
                str(photos),
                "--include-stem",
            ]
        )
    assert exc.value.code in (0, None)
    recs = _check_dataset(tmp_path / "out", 3)
    assert all(r["include_stem"] for r in recs)
    assert {r["kind"] for r in recs} <= {"white", "negative", "real-negative"}
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path / "out2"), "--n", "1", "--kinds", "spaceship"])
    assert exc.value.code == 2
    assert "spaceship" in capsys.readouterr().err
    manifest = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line)["size"] == [96, 64] for line in manifest)


def test_produce_scenes_frame_one_lookalike_whole_without_okra() -> None:
    """v9: shop photos of a leek, a spinach mound or bunch on white were called okra; ``produce``
    scenes show one look-alike framed whole near the middle, mostly on white, never as okra."""
    whites = 0
    for seed in range(16):
        s = render_scene(seed, SIZE, "produce")
        assert s.kind == "produce" and not s.mask.any() and s.pods == []
        d = s.distractor_mask
        assert 0.03 < d.mean() < 0.8, (seed, d.mean())
        ys, xs = np.nonzero(d)
        # framed near the middle: the look-alike's centroid sits in the central half of the frame
        assert abs(xs.mean() / SIZE[0] - 0.5) < 0.25 and abs(ys.mean() / SIZE[1] - 0.5) < 0.25, seed
        corners = np.concatenate([s.image[:6, :6].reshape(-1, 3), s.image[-6:, -6:].reshape(-1, 3)])
        whites += bool(corners.min(axis=1).mean() > 200)
    assert whites >= 8


def test_leek_plant_fans_flat_leaves_from_a_pale_rooted_shank() -> None:
    """v9: a whole leek is a pale shank with a root tuft, splitting into 3-7 diverging leaves."""
    from okrainsight.synth.distractors import leek_plant
    from okrainsight.synth.shading import Light

    light = Light(direction=np.array([0.3, -0.4, 0.87]), colour=np.ones(3, np.float32), ambient=0.35)
    for seed in range(4):
        sprites = leek_plant(np.random.default_rng(seed), (160.0, 120.0), 0.0, 200.0, light, (320, 240))
        kinds = [sp.kind for sp in sprites]
        assert all(sp.okra is None for sp in sprites)
        assert 4 <= kinds.count("leek") <= 8 and kinds.count("roots") >= 8
        *leaves, shank = [sp for sp in sprites if sp.kind == "leek"]
        # angle 0: leaves reach right of the junction, the shank and roots lie to its left
        assert all(sp.x0 + sp.cover.shape[1] > 200 for sp in leaves)
        assert shank.x0 < 130
        assert all(sp.x0 < 160 for sp in sprites if sp.kind == "roots")

        # the shank is paler than the leaves
        def mean_value(sp):
            return float(sp.rgb[sp.cover].max(axis=1).mean())

        assert mean_value(shank) > np.mean([mean_value(sp) for sp in leaves])
        # the leaves fan out: their bounding boxes span more height than one leaf's width
        tops = [sp.y0 for sp in leaves] + [sp.y0 + sp.cover.shape[0] for sp in leaves]
        assert max(tops) - min(tops) > 30


def test_camera_sometimes_renders_vivid_colour() -> None:
    # renderer v10: about a third of the photos get a "vivid" chroma boost (real shop photos of okra
    # reach a saturation of 0.87 where v9's renders of pods stayed under 0.72 nine times in ten)
    from okrainsight.synth.camera import LUMA, apply_camera, saturate

    flat = np.zeros((64, 64, 3), np.float32)
    flat[:] = (0.25, 0.45, 0.12)
    boosted = saturate(flat, 1.4)
    assert np.allclose(boosted @ LUMA, flat @ LUMA, atol=1e-6)  # brightness kept
    assert np.ptp(boosted[0, 0]) == pytest.approx(1.4 * np.ptp(flat[0, 0]), rel=1e-5)

    def centre_saturation(u8: np.ndarray) -> float:
        return float(cv2.cvtColor(u8, cv2.COLOR_RGB2HSV)[16:48, 16:48, 1].mean())

    ref = centre_saturation((flat * 255).astype(np.uint8))
    ratios = [centre_saturation(apply_camera(flat, np.random.default_rng(i))) / ref for i in range(100)]
    vivid = sum(r > 1.12 for r in ratios)
    assert 20 <= vivid <= 55  # 39 of 100 measured; white balance, exposure and the tone curve alone: 0
    assert min(ratios) > 0.9


def test_some_pods_are_dull_grey_green() -> None:
    # renderer v11: a real market basket's pods sit at hue 115 degrees, saturation 0.46, value 0.5
    # (median), bluer and greyer than any green or deep-green pod of v10
    from okrainsight.synth.pods import sample_pod_attributes

    rng = np.random.default_rng(0)
    pods = [sample_pod_attributes(rng, 100.0) for _ in range(2000)]
    grey = [p for p in pods if p["variety"] == "grey"]
    assert 0.12 < len(grey) / len(pods) < 0.22  # 0.96 x 0.7 x 0.25 = 0.17 expected
    assert max(p["hue"] for p in grey) > 125  # bluer than v10's greens (at most 118)
    assert min(p["hue"] for p in grey) >= 98 - 16  # age yellows by at most 16 degrees
    green = [p for p in pods if p["variety"] == "green"]
    assert np.median([p["sat"] for p in grey]) < np.median([p["sat"] for p in green]) - 0.15


def test_camera_sometimes_casts_a_strong_cool_or_warm_tint() -> None:
    # renderer v11: 15% of photos get a white-balance cast of 5-12% on red and blue on top of the
    # usual small one (sd 4%), both ways
    from okrainsight.synth.camera import apply_camera

    flat = np.full((48, 48, 3), 0.45, np.float32)
    casts = []
    for i in range(300):
        u8 = apply_camera(flat, np.random.default_rng(i)).astype(np.float64)
        r, b = u8[12:36, 12:36, 0].mean(), u8[12:36, 12:36, 2].mean()
        casts.append(np.log(r / b))
    casts = np.array(casts)
    strong = np.abs(casts) > 0.2  # |wb| beyond about 0.1: about 1% of draws from the sd-4% shift alone
    assert 12 <= strong.sum() <= 60  # 34 of 300 measured (20 warm, 14 cool)
    assert (casts[strong] > 0).any() and (casts[strong] < 0).any()


def test_plant_pods_grow_fat_and_fuzzy_from_the_stalk_which_stays_out_of_the_mask() -> None:
    from okrainsight.synth.distractors import stalk
    from okrainsight.synth.shading import random_light

    for seed in range(5):
        rng = np.random.default_rng(seed)
        sp = stalk(rng, (128.0, 120.0), -np.pi / 2, 100.0, random_light(rng), (256, 192))
        assert sp is not None and sp.okra is None and sp.tube is not None and sp.cover.sum() > 500
        mid = np.array([(sp.tube.s_start + sp.tube.s_end) / 2])
        assert sp.tube.radius(mid).item() >= 3.9  # thick: 8-14% of a pod length across
    grown = 0
    for seed in range(30):
        s = render_scene(seed, (256, 192), "plant")
        for pod, tube in zip(s.pods, s.tubes, strict=True):
            if not pod["on_stalk"]:
                continue
            grown += 1
            assert pod["width_px"] / pod["length_px"] >= 0.17 and pod["age"] <= 0.35
            # the pod's stalk end (start of its tube) sits on the plant's stalk, a distractor pixel
            # near it unless another pod or a leaf in front hides it
            x, y = np.round(tube.nodes[0]).astype(int)
            if 3 <= x < 253 and 3 <= y < 189:
                near = s.distractor_mask[y - 3 : y + 4, x - 3 : x + 4] | (
                    s.mask[y - 3 : y + 4, x - 3 : x + 4] > 0
                )
                assert near.any()
    assert grown >= 10


def test_folded_blade_shades_as_two_flat_facets_meeting_at_a_crease() -> None:
    """v14: ``Material.fold`` turns a round cross-section into two flat facets (a leek leaf folded
    down its middle): brightness jumps at the crease and stays level on each side, where a
    round tube brightens and darkens smoothly across its width."""
    from okrainsight.synth.distractors import _tube
    from okrainsight.synth.geometry import generic_profile
    from okrainsight.synth.shading import Light, Material, tube_sprite

    light = Light(direction=np.array([0.0, -0.6, 0.8]), colour=np.ones(3, np.float32), ambient=0.2)
    s, r = generic_profile(200.0, 40.0, 0.05, 0.05, 0.5, 0.5)

    def profile(fold: float) -> np.ndarray:
        rng = np.random.default_rng(0)
        tube = _tube(s, r, (160.0, 120.0), 0.0, rng, 0.0)  # along x: the width runs down y
        mat = Material(base=np.array([0.3, 0.6, 0.3], np.float32), specular=0.0, mottle=0.0, fold=fold)
        sp = tube_sprite(tube, mat, light, rng, (320, 240), "leek")
        col = sp.cover.shape[1] // 2
        rows = np.flatnonzero(sp.cover[:, col])
        return sp.rgb[rows, col].mean(axis=1)[3:-3]  # away from the anti-aliased rim

    folded, round_ = profile(1.0), profile(0.0)
    half = len(folded) // 2
    upper, lower = folded[: half - 2], folded[half + 2 :]
    # the facet facing the light (up, -y) is brighter, and each facet is level
    assert upper.mean() - lower.mean() > 0.1
    assert upper.std() < 0.01 and lower.std() < 0.01
    # the step happens at the crease: a round tube changes little across its middle and keeps
    # darkening away from the light instead
    assert folded[half - 2] - folded[half + 2] > 0.1
    assert abs(round_[half - 2] - round_[half + 2]) < 0.05
    assert round_[half + 2 :].std() > 0.05


def test_piles_hold_slender_pods_as_well_as_fat_ones() -> None:
    """v14: some market piles are of slender pods (a real basket of thin pods was called a heap of
    beans), others of fat ones (one width factor per pile). Measured on pods lying nearly flat
    (tilt under 0.3 rad), whose projected width-to-length ratio is close to the pod's own:
    renderer v13 had 3% of them under 0.13."""
    ratios = []
    for seed in range(4):
        scene = render_scene(seed, (192, 144), "pile")
        ratios += [
            p["width_px"] / p["length_px"] for p in scene.pods if p["length_px"] > 0 and p["tilt"] < 0.3
        ]
    ratios = np.array(ratios)
    assert len(ratios) > 100
    assert (ratios < 0.13).mean() > 0.1
    assert (ratios > 0.2).mean() > 0.05


def _ridged_profile(**mat_kw: float) -> np.ndarray:
    """Mean brightness down the middle column of a straight, level ridged tube lying along x
    (its width runs down y), lit from above; the anti-aliased rim left out."""
    from okrainsight.synth.distractors import _tube
    from okrainsight.synth.geometry import generic_profile
    from okrainsight.synth.shading import Light, Material, tube_sprite

    light = Light(direction=np.array([0.3, -0.5, 0.8]), colour=np.ones(3, np.float32), ambient=0.2)
    s, r = generic_profile(200.0, 48.0, 0.05, 0.05, 0.5, 0.5)
    rng = np.random.default_rng(0)
    tube = _tube(s, r, (160.0, 120.0), 0.0, rng, 0.0)
    kw = {"ridges": 5, "ridge_amp": 0.05, "specular": 0.0, "mottle": 0.0, **mat_kw}
    mat = Material(base=np.array([0.3, 0.6, 0.3], np.float32), **kw)
    sp = tube_sprite(tube, mat, light, rng, (320, 240), "okra")
    col = sp.cover.shape[1] // 2
    rows = np.flatnonzero(sp.cover[:, col])
    return sp.rgb[rows, col].mean(axis=1)[3:-3]


def test_faceted_pods_show_level_faces_that_step_at_the_ridges() -> None:
    """v16: with ``Material.facet`` 1 a ridged tube shades as a polygon, as real okra does: each
    face is level and the brightness steps at the ridges, where a round ridged tube (facet 0)
    brightens and darkens smoothly all across."""
    # shallow ridge bumps (v17 keeps half of them on the faces of old, strongly ridged pods)
    faceted, round_ = _ridged_profile(facet=1.0, ridge_amp=0.005), _ridged_profile(facet=0.0, ridge_amp=0.005)
    level = lambda p: float((np.abs(np.diff(p)) < 0.004).mean())  # noqa: E731
    steps = lambda p: int((np.abs(np.diff(p)) > 0.03).sum())  # noqa: E731
    assert level(faceted) > 0.75 and level(round_) < 0.5
    assert steps(faceted) >= 1  # a ridge between two faces (here one faces the camera-side light)
    assert steps(round_) == 0


def test_ridge_crests_are_pale_and_fur_flattens_the_shading() -> None:
    plain = _ridged_profile(facet=1.0)
    crested = _ridged_profile(facet=1.0, crest=0.3)
    lifted = (crested - plain) > 0.01
    # thin pale lines at the ridges: a few pixels brighter, most of each face untouched
    assert (crested - plain).max() > 0.03 and 0 < lifted.mean() < 0.3
    velvet = _ridged_profile(facet=1.0, velvet=1.0)
    assert velvet.std() < 0.75 * plain.std()


def test_calyx_rim_is_scalloped_by_lobes_reaching_onto_the_body() -> None:
    """v16: with ``Material.lobes`` the calyx colour reaches past the cap/body junction (s = 0)
    between the ridges and not on them, so the rim is scalloped; without lobes it stops at s = 0.
    The mask is unchanged: it is decided by the geometry (body and cap), not by colour."""
    from okrainsight.synth.geometry import Tube, centreline, okra_profile
    from okrainsight.synth.shading import Light, Material, tube_sprite

    cap_len = 24.0
    s_tab, r_tab = okra_profile(200.0, 40.0, cap_len, 0.0, 4.0, 0.5, 1.2, 0.9, cap_base=0.5, cap_cone=1.0)
    nodes, s_nodes = centreline((40.0 + cap_len, 120.0), 0.0, -cap_len, 200.0, 0.0)
    light = Light(direction=np.array([0.0, 0.0, 1.0]), colour=np.ones(3, np.float32), ambient=0.6)

    def cap_share(lobes: float) -> tuple[float, float]:
        rng = np.random.default_rng(0)
        tube = Tube(nodes, s_nodes, s_tab, r_tab, cap_len=cap_len)
        mat = Material(
            base=np.array([0.1, 0.1, 0.8], np.float32),
            cap=np.array([0.8, 0.1, 0.1], np.float32),
            ridges=5,
            ridge_amp=0.05,
            facet=1.0,
            lobes=lobes,
            specular=0.0,
            mottle=0.0,
        )
        sp = tube_sprite(tube, mat, light, rng, (320, 240), "okra")
        covers.append(sp.cover)
        f = sp.fields
        rgb = sp.rgb[f.ys, f.xs]
        red = rgb[:, 0] > rgb[:, 2]
        just_below = f.inside & (f.s > 1.0) & (f.s < 0.5 * cap_len)
        return float(red[just_below].mean()), float(red[f.inside & (f.s < -2.0)].mean())

    covers: list[np.ndarray] = []
    body_flat, cap_flat = cap_share(0.0)
    body_lobed, cap_lobed = cap_share(0.8)
    assert np.array_equal(covers[0], covers[1])  # the lobes are colour only: the silhouette is the same
    assert cap_flat > 0.95 and cap_lobed > 0.95
    assert body_flat == 0.0
    assert 0.15 < body_lobed < 0.85  # some of the band is calyx, the rest body: a scalloped rim


def test_calyx_cone_widens_over_the_whole_cap() -> None:
    from okrainsight.synth.geometry import okra_profile

    def cap_radius(cone: float, v: float) -> float:
        s, r = okra_profile(200.0, 40.0, 20.0, 0.0, 4.0, 0.5, 1.2, 0.9, cap_base=0.4, cap_cone=cone)
        return float(np.interp(-20.0 + v * 20.0, s, r))

    assert cap_radius(1.0, 0.3) < cap_radius(0.0, 0.3) - 3  # the collar is near full width by then
    assert cap_radius(1.0, 0.1) < cap_radius(1.0, 0.5) < cap_radius(1.0, 0.9)
    assert cap_radius(1.0, 0.99) == pytest.approx(cap_radius(0.0, 0.99), abs=1.0)


def test_pods_carry_facets_into_their_material_and_plant_pods_are_furred() -> None:
    from okrainsight.synth.pods import plant_pod_attributes, pod_material, sample_pod_attributes

    rng = np.random.default_rng(0)
    pods = [sample_pod_attributes(rng, 100.0) for _ in range(400)]
    facets = np.array([p["facet"] for p in pods])
    ages = np.array([p["age"] for p in pods])
    # most pods faceted, old ones the most (v17: a tenderness cue), about one in seven nearly round
    assert 0.75 < (facets >= 0.2).mean() < 0.95 and facets.max() <= 0.95
    assert facets[ages > 0.75].mean() > facets[ages < 0.25].mean() + 0.25
    for p in pods[:20]:
        mat = pod_material(p, rng)
        assert mat.facet == p["facet"] and mat.velvet == 0.0 and mat.lobes > 0 and mat.crest > 0
    for _ in range(20):
        mat = pod_material(plant_pod_attributes(rng, 100.0), rng)
        assert mat.velvet > 0.3


def test_two_calyxes_in_five_take_the_body_colour() -> None:
    """v18: white_02's dark shop pods have a cap of the body's own deep green, a shade darker;
    before v18 every cap was paler and yellower than its body."""
    import colorsys

    from okrainsight.synth.pods import pod_material, sample_pod_attributes

    rng = np.random.default_rng(1)
    own = []
    for _ in range(600):
        attrs = sample_pod_attributes(rng, 100.0, age=0.2)  # young: no dried brown calyx
        if attrs["variety"] == "burgundy":
            continue
        mat = pod_material(attrs, rng)
        hb, sb, vb = colorsys.rgb_to_hsv(*np.clip(mat.base, 0, 1))
        hc, sc, vc = colorsys.rgb_to_hsv(*np.clip(mat.cap, 0, 1))
        dh = abs((hc - hb + 0.5) % 1.0 - 0.5) * 360
        own.append(dh <= 6.5 and vc <= vb * 1.001 and sc >= sb * 0.89)
    assert 0.3 < np.mean(own) < 0.5


def test_taper_power_above_one_keeps_the_body_full_into_the_taper() -> None:
    from okrainsight.synth.geometry import okra_profile

    def radius_mid_taper(power: float) -> float:
        s, r = okra_profile(200.0, 40.0, 20.0, 0.0, 4.0, 0.5, power, 0.9)
        return float(np.interp(150.0, s, r))  # half way down the taper (body 0-200, taper from 100)

    assert radius_mid_taper(2.4) > 15 > 9 > radius_mid_taper(0.6)
    assert radius_mid_taper(0.6) < radius_mid_taper(1.1) < radius_mid_taper(2.4)


def test_pile_pods_of_one_harvest_share_their_colour() -> None:
    """v19: most piles are one harvest (one variety, hues within a few degrees); without a batch,
    pods mix every variety."""
    from okrainsight.synth.pods import sample_pod_attributes
    from okrainsight.synth.scenes import _place_pods
    from okrainsight.synth.shading import Light

    light = Light(direction=np.array([0.3, -0.5, 0.8]), colour=np.ones(3, np.float32), ambient=0.3)
    rng = np.random.default_rng(3)
    batch = sample_pod_attributes(rng, 60.0)
    one = _place_pods(rng, 30, 60.0, (192, 144), light, False, batch=batch)
    mixed = _place_pods(rng, 30, 60.0, (192, 144), light, False)
    assert len(one) > 20 and len(mixed) > 20
    assert {sp.info["variety"] for sp in one} == {batch["variety"]}
    hues = np.array([sp.info["hue"] for sp in one])
    assert np.abs((hues - batch["hue"] + 180) % 360 - 180).max() < 20
    assert len({sp.info["variety"] for sp in mixed}) > 1
    assert np.ptp([sp.info["hue"] for sp in mixed]) > 20


def test_bud_cluster_is_pale_cones_in_thread_thin_bracts_and_never_okra() -> None:
    """v20: the buds that crown an okra plant are 2-7 ridged cones, each wrapped in 7-10 thin
    bracts that mostly lie behind it; all of it is a distractor."""
    from okrainsight.synth.distractors import bud_cluster
    from okrainsight.synth.shading import Light

    light = Light(direction=np.array([0.2, -0.5, 0.85]), colour=np.ones(3, np.float32), ambient=0.3)
    scale, top = 200.0, (160.0, 150.0)
    behind = in_front = 0
    for seed in range(6):
        sprites = bud_cluster(np.random.default_rng(seed), top, -np.pi / 2, scale, light, (320, 240))
        assert sprites and all(sp.okra is None and sp.kind == "bud" for sp in sprites)
        radius = np.array([sp.tube.r_table.max() for sp in sprites])
        buds = np.flatnonzero(radius > 0.35 * 0.18 * scale / 2 - 0.5)  # the narrowest bud is wider
        bracts = np.flatnonzero(radius <= max(1.0, 0.045 * 0.4 * scale) / 2 + 1e-6)
        assert 2 <= len(buds) <= 7 and len(bracts) >= 7 * len(buds)
        # the cluster grows from the stalk's top: every sprite lies near it and reaches above it
        for sp in sprites:
            h, w = sp.cover.shape
            assert sp.x0 + w > top[0] - scale and sp.x0 < top[0] + scale and sp.y0 < top[1] + 4
        behind += int((bracts < buds.min()).sum())
        in_front += int((bracts > buds.max()).sum())
    assert in_front < behind


def test_plant_scenes_crown_the_stalk_with_buds_outside_the_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """v20: most plant scenes show flower buds (v21: some framed close, the buds large); a bud
    pixel that nothing covers is a distractor pixel and never okra."""
    import okrainsight.synth.scenes as scenes

    drawn: list[list] = []
    compose = scenes._compose

    def spy(bg, sprites, light, shadow):
        drawn.append(list(sprites))
        return compose(bg, sprites, light, shadow)

    monkeypatch.setattr(scenes, "_compose", spy)
    with_buds = large = 0
    for seed in range(40):
        s = render_scene(seed, SIZE, "plant")
        top = np.zeros(SIZE[::-1], bool)  # bud pixels not covered by a later sprite
        for sp in drawn[-1]:
            h, w = sp.cover.shape
            region = (slice(sp.y0, sp.y0 + h), slice(sp.x0, sp.x0 + w))
            cover = sp.cover[: top[region].shape[0], : top[region].shape[1]]
            top[region][cover] = sp.kind == "bud"
        with_buds += int(top.sum() > 20)
        large += int(top.mean() > 0.02)
        assert s.distractor_mask[top].all() and not s.mask[top].any()
    assert with_buds >= 24  # 34 of 40 measured; three in four crown the stalk, two in five of the rest
    # v21: framed close on the stalk's top, buds fill a good part of the frame (14 of 40 measured;
    # v20, without the close framing: 6)
    assert large >= 9


def test_far_piles_hold_more_than_180_pods() -> None:
    """v20: a pile of small pods seen from afar covers the frame with up to 320 pods (v6-v19
    stopped at 180, which left gaps between them)."""
    counts = [len(render_scene(seed, SIZE, "pile").pods) for seed in range(3000, 3008)]
    assert max(counts) > 180 and max(counts) <= 320


def test_rasterise_leaves_out_hidden_pixels_and_keeps_the_rest_exact() -> None:
    """v20 occlusion culling: pixels under ``hidden`` are not in the fields; every other pixel
    keeps the very values of the unculled rasterisation; a tube wholly hidden gives None."""
    from okrainsight.synth.distractors import _tube
    from okrainsight.synth.geometry import generic_profile, rasterise

    s, r = generic_profile(120.0, 24.0, 0.1, 0.3, 0.5, 1.5)
    tube = _tube(s, r, (96.0, 72.0), 0.4, np.random.default_rng(0), 0.5)
    full = rasterise(tube, SIZE)
    hidden = np.zeros(SIZE[::-1], bool)
    hidden[:, :96] = True
    part = rasterise(tube, SIZE, hidden=hidden)
    assert full is not None and part is not None
    assert not hidden[part.ys + part.y0, part.xs + part.x0].any()
    keep = ~hidden[full.ys + full.y0, full.xs + full.x0]
    assert keep.sum() == len(part.xs) > 100 and (~keep).sum() > 100
    np.testing.assert_array_equal(part.coverage, full.coverage[keep])
    np.testing.assert_array_equal(part.s, full.s[keep])
    assert rasterise(tube, SIZE, hidden=np.ones(SIZE[::-1], bool)) is None
