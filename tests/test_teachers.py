"""Teachers: the real SamPredictor path on a tiny random SAM, checkpoint checks, GrabCut on renders."""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from _tiny_models import greenness_onnx_dir
from okrainsight.errors import ConfigError, ModelError
from okrainsight.teachers import TeacherResult, create_teacher, list_teachers, mask_iou
from okrainsight.teachers.sam import KnownCheckpoint, SamTeacher, load_sam, verify_checkpoint

torch.set_num_threads(1)

import segment_anything as sa  # noqa: E402 - a `label` extra dependency: fail, never skip, when missing
from segment_anything import SamPredictor  # noqa: E402
from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

IMG = 64  # the tiny SAM's input side (the real one: 1024)


def tiny_sam(seed: int = 0) -> Sam:
    """A SAM with the official architecture at toy size and random weights."""
    torch.manual_seed(seed)
    dim = 32
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMG,
            patch_size=8,
            embed_dim=dim,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=0,
            global_attn_indexes=(0,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(IMG // 8, IMG // 8),
            input_image_size=(IMG, IMG),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=32, num_heads=2),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=16,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def photo(seed: int, size: tuple[int, int] = (120, 90)) -> np.ndarray:
    """A non-square RGB test image (w, h) = size with some structure."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[h // 3 : 2 * h // 3, w // 4 : 3 * w // 4] = (60, 160, 50)
    return img


def count_encoder_calls(sam: Sam) -> list[int]:
    calls = [0]
    enc = sam.image_encoder
    original = enc.forward

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return original(x)

    enc.forward = counted  # type: ignore[method-assign]
    return calls


def test_registry_lists_builtin_teachers_and_rejects_unknown() -> None:
    assert {"sam", "grabcut", "student"} <= set(list_teachers())
    with pytest.raises(ModelError, match="unknown teacher 'nope'.*grabcut"):
        create_teacher("nope")


def test_sam_teacher_matches_direct_predictor_top_candidate() -> None:
    sam = tiny_sam(0)
    teacher = SamTeacher(model=sam)
    img = photo(1, (120, 90))
    points = np.array([[30.0, 40.0], [95.5, 50.25]])
    labels = np.array([1, 1])
    res = teacher.predict(img, points, labels)

    direct = SamPredictor(tiny_sam(0))
    direct.set_image(img)
    masks, scores, _ = direct.predict(point_coords=points, point_labels=labels, multimask_output=True)
    top = int(np.argmax(scores))
    assert isinstance(res, TeacherResult)
    assert res.mask.shape == (90, 120) and res.mask.dtype == bool
    assert res.probability.shape == (90, 120) and res.probability.dtype == np.float32
    assert res.probability.min() >= 0.0 and res.probability.max() <= 1.0
    assert len(res.candidates) == 3 and res.chosen == top
    np.testing.assert_array_equal(res.mask, masks[top])
    np.testing.assert_allclose(res.candidate_scores, scores, rtol=1e-5, atol=1e-6)
    assert res.score == pytest.approx(float(scores[top]), rel=1e-5)
    assert 0.0 <= res.stability <= 1.0
    # probability > 0.5 is the same decision as logits > 0
    np.testing.assert_array_equal(res.probability > 0.5, res.mask)


def test_sam_teacher_scales_points_from_full_resolution_like_sampredictor() -> None:
    sam = tiny_sam(0)
    seen: list[torch.Tensor] = []
    pe = sam.prompt_encoder
    original = pe.forward

    def spy(points, boxes, masks):  # type: ignore[no-untyped-def]
        seen.append(points[0].clone())
        return original(points, boxes, masks)

    pe.forward = spy  # type: ignore[method-assign]
    teacher = SamTeacher(model=sam)
    img = photo(2, (160, 100))  # longest side 160 -> scale 64/160 = 0.4
    teacher.predict(img, [[10.0, 20.0], [150.0, 90.0]], [1, 0])
    got = seen[-1][0].numpy()
    np.testing.assert_allclose(got, [[4.0, 8.0], [60.0, 36.0]], atol=1e-4)


def test_sam_embedding_computed_once_per_image() -> None:
    sam = tiny_sam(0)
    calls = count_encoder_calls(sam)
    teacher = SamTeacher(model=sam)
    img = photo(3)
    teacher.predict(img, [[10, 10]], [1])
    teacher.predict(img, [[50, 40], [70, 30]], [1, 0])
    teacher.predict(img.copy(), None, None, box=[5, 5, 80, 60])  # same pixels, new array
    assert calls[0] == 1
    other = photo(4)
    teacher.predict(other, [[10, 10]], [1])
    assert calls[0] == 2


def test_prompts_are_validated() -> None:
    teacher = SamTeacher(model=tiny_sam(0))
    img = photo(5, (120, 90))
    with pytest.raises(ConfigError, match="outside"):
        teacher.predict(img, [[130, 10]], [1])
    with pytest.raises(ConfigError, match="one label per point"):
        teacher.predict(img, [[10, 10], [20, 20]], [1])
    with pytest.raises(ConfigError, match="positive point"):
        teacher.predict(img, [[10, 10]], [0])


# ----------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------


def _table(path: Path, data: bytes, model_type: str = "tiny") -> dict[str, KnownCheckpoint]:
    return {model_type: KnownCheckpoint(path.name, len(data), hashlib.sha256(data).hexdigest(), "file://x")}


def test_official_checkpoint_table() -> None:
    from okrainsight.teachers.sam import KNOWN_CHECKPOINTS

    assert KNOWN_CHECKPOINTS["vit_h"].filename == "sam_vit_h_4b8939.pth"
    assert KNOWN_CHECKPOINTS["vit_h"].size == 2_564_550_879
    assert all(len(k.sha256) == 64 for k in KNOWN_CHECKPOINTS.values())


def test_truncated_and_mismatched_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8
    good = tmp_path / "sam_tiny.pth"
    good.write_bytes(data)
    table = _table(good, data)
    assert verify_checkpoint(good, "tiny", table) == hashlib.sha256(data).hexdigest()

    short = tmp_path / "short.pth"
    short.write_bytes(data[:1000])
    with pytest.raises(ModelError, match=r"truncated \(1,000 of 2,048 bytes"):
        verify_checkpoint(short, "tiny", table)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(data[:-1] + b"\x00")
    with pytest.raises(ModelError, match="SHA-256 .* does not match"):
        verify_checkpoint(bad, "tiny", table)
    big = tmp_path / "big.pth"
    big.write_bytes(data + b"x")
    with pytest.raises(ModelError, match="wrong file or wrong --model-type"):
        verify_checkpoint(big, "tiny", table)
    with pytest.raises(ModelError, match="not found"):
        verify_checkpoint(tmp_path / "missing.pth", "tiny", table)
    with pytest.raises(ModelError, match="unknown SAM model type"):
        verify_checkpoint(good, "vit_x", table)
    with pytest.raises(ModelError, match="needs --checkpoint"):
        SamTeacher(model_type="vit_h")


def test_checkpoint_loads_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sa.sam_model_registry, "tiny", lambda checkpoint=None: tiny_sam(seed=99))
    source = tiny_sam(seed=7)
    path = tmp_path / "sam_tiny.pth"
    torch.save(source.state_dict(), path)
    table = _table(path, path.read_bytes())
    sam, digest = load_sam(path, "tiny", device="cpu", known=table)
    assert digest == table["tiny"].sha256
    for (k, a), b in zip(source.state_dict().items(), sam.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    teacher = SamTeacher(model_type="tiny", checkpoint=path, device="cpu", known=table)
    assert teacher.describe()["checkpoint_sha256"] == digest

    # a pickle holding an arbitrary object is refused (weights_only), with a clear error
    evil = tmp_path / "evil.pth"
    torch.save({"x": Path("/etc")}, evil)
    with pytest.raises(ModelError, match="weights-only|do not fit"):
        load_sam(evil, "tiny", device="cpu", known=_table(evil, evil.read_bytes()))


# ----------------------------------------------------------------------------------
# GrabCut on the renderer's plain-background scenes
# ----------------------------------------------------------------------------------


def _white_scene(seed: int, size: tuple[int, int] = (256, 192)):  # type: ignore[no-untyped-def]
    from okrainsight.synth import render_scene

    return render_scene(seed, size, kind="white")


@pytest.mark.parametrize("seed", range(8))
def test_grabcut_from_two_points_matches_exact_mask(seed: int) -> None:
    scene = _white_scene(seed)
    axis = np.asarray(scene.pods[0]["axis_points"], float)
    n = len(axis)
    points = axis[[int(0.3 * n), int(0.7 * n)]]
    res = create_teacher("grabcut").predict(scene.image, points, [1, 1])
    iou = mask_iou(res.mask, scene.mask > 0)
    # 0.89-0.98 measured on renderer v10 (the lowest: a dark deep-green pod beside its shadow)
    assert iou >= 0.88, f"seed {seed}: IoU {iou:.3f}"
    assert res.probability.dtype == np.float32 and res.probability.shape == scene.mask.shape
    assert res.score == 1.0  # both clicks inside the mask


def test_grabcut_from_one_click_in_the_middle_labels_the_whole_pod() -> None:
    # one click, no box: the box grows over the background-contrasting region the click touches.
    # Before, a box of 8% of the photo around the click fixed the pod's far parts as background
    # (IoU 0.01-0.44 on seeds 0-11); now 0.92-0.99
    teacher = create_teacher("grabcut")
    for seed in range(6):
        scene = _white_scene(seed)
        axis = np.asarray(scene.pods[0]["axis_points"], float)
        res = teacher.predict(scene.image, [axis[len(axis) // 2]], [1])
        assert mask_iou(res.mask, scene.mask > 0) >= 0.88, f"seed {seed}"
    # two clicks keep the box tight: the box does not grow over the clicked region, so on a bunch
    # of touching pods the label stays inside the clicks' box grown by the margin, and covers the
    # clicked pod. It does not separate touching pods inside that box: on renderer v16's bunches
    # (seeds 3-10) the label's IoU with the clicked pod is 0.25-0.71, its recall 0.34-0.99
    # (renderer v14's seed 3 happened to give 0.93)
    from okrainsight.synth import render_scene

    bunch = render_scene(3, (256, 192), kind="bunch")
    pod = bunch.pods[0]
    axis = np.asarray(pod["axis_points"], float)
    n = len(axis)
    clicks = axis[[int(0.3 * n), int(0.7 * n)]]
    two = teacher.predict(bunch.image, clicks, [1, 1])
    mine = bunch.instances == pod["id"]
    assert (two.mask & mine).sum() / mine.sum() >= 0.9
    margin = max(teacher.expand * float(np.linalg.norm(np.ptp(clicks, axis=0))), teacher.min_margin * 256)
    margin += 3  # the box's integer rounding and the label's edge smoothing
    ys, xs = np.nonzero(two.mask)
    assert xs.min() >= clicks[:, 0].min() - margin and xs.max() <= clicks[:, 0].max() + margin
    assert ys.min() >= clicks[:, 1].min() - margin and ys.max() <= clicks[:, 1].max() + margin
    assert two.mask.sum() < 0.9 * (bunch.mask > 0).sum()  # not the whole bunch
    assert teacher.describe()["version"] == 2
    # on a busy backdrop the region is large and the box stays small around the click
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    res = teacher.predict(busy, [[128.0, 96.0]], [1])
    ys, xs = np.nonzero(res.mask)
    assert res.mask[96, 128] and np.ptp(xs) < 0.5 * 256 and np.ptp(ys) < 0.5 * 192


def test_grabcut_negative_point_and_box_are_respected() -> None:
    scene = _white_scene(3)
    axis = np.asarray(scene.pods[0]["axis_points"], float)
    n = len(axis)
    x0, y0, x1, y1 = scene.pods[0]["bbox"]
    res = create_teacher("grabcut").predict(
        scene.image, [axis[n // 2], [2.0, 2.0]], [1, 0], box=[x0 - 4, y0 - 4, x1 + 4, y1 + 4]
    )
    assert not res.mask[2, 2]
    assert not res.mask[:, : max(0, x0 - 5)].any()
    assert mask_iou(res.mask, scene.mask > 0) >= 0.85


# ----------------------------------------------------------------------------------
# a trained student (ONNX Runtime) as teacher
# ----------------------------------------------------------------------------------


def test_student_teacher_selects_the_clicked_pod(tmp_path: Path) -> None:
    from okrainsight.teachers.student import load_student_mask_fn

    model = greenness_onnx_dir(tmp_path / "m", (64, 48))
    img = np.full((96, 128, 3), 235, np.uint8)
    img[20:30, 10:60] = (60, 170, 50)  # pod A
    img[60:70, 70:120] = (60, 170, 50)  # pod B
    teacher = create_teacher("student", model=str(model))
    res = teacher.predict(img, [[30, 25]], [1])
    assert res.mask[25, 30] and not res.mask[65, 100]
    assert mask_iou(res.mask, np.pad(np.ones((10, 50), bool), ((20, 66), (10, 68)))) > 0.8
    both = teacher.predict(img, [[30, 25], [100, 65]], [1, 1])
    assert both.mask[25, 30] and both.mask[65, 100]
    not_b = teacher.predict(img, [[30, 25], [100, 65]], [1, 0])
    assert not not_b.mask[65, 100]
    assert teacher.describe()["checkpoint_sha256"] is not None
    student_mask = load_student_mask_fn(str(model))(img)
    assert student_mask[25, 30] and student_mask[65, 100] and not student_mask[5, 5]


@pytest.mark.parametrize("name", ["sam", "grabcut", "student"])
def test_teacher_contract(name: str, tmp_path: Path) -> None:
    """Every registered teacher returns a consistent TeacherResult for points, negatives and a box."""
    assert name in list_teachers()
    kwargs: dict = {}
    if name == "sam":
        kwargs = {"model": tiny_sam(0)}
    elif name == "student":
        kwargs = {"model": str(greenness_onnx_dir(tmp_path / "m", (64, 48)))}
    teacher = create_teacher(name, **kwargs)
    img = np.full((90, 120, 3), 235, np.uint8)
    img[30:45, 15:100] = (60, 170, 50)
    for points, labels, box in [
        ([[30, 37], [80, 38]], [1, 1], None),
        ([[50, 37], [5, 5]], [1, 0], None),
        (None, None, [10, 25, 105, 50]),
    ]:
        res = teacher.predict(img, points, labels, box)
        assert res.mask.shape == (90, 120) and res.mask.dtype == bool
        assert res.probability.shape == (90, 120) and res.probability.dtype == np.float32
        assert float(res.probability.min()) >= 0.0 and float(res.probability.max()) <= 1.0
        assert len(res.candidates) == len(res.candidate_scores) >= 1
        assert 0 <= res.chosen < len(res.candidates)
        np.testing.assert_array_equal(res.mask, res.candidates[res.chosen])
        assert res.score == pytest.approx(res.candidate_scores[res.chosen])
        assert 0.0 <= res.stability <= 1.0
    info = teacher.describe()
    assert info["name"] == name and "checkpoint_sha256" in info
