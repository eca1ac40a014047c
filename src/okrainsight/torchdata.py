"""A torch ``Dataset`` over the dataset format, with joint augmentation of image, mask and soft map.

Each item is a dict:

* ``image``: float32 ``(3, H, W)``, RGB normalised as ``(pixel / 255 - mean) / std``;
* ``mask``: float32 ``(1, H, W)``, 0/1 (okra = 1); all zeros for negatives;
* ``soft``: float32 ``(1, H, W)``, the teacher's probability in [0, 1] (the hard mask
  where the sample has no ``soft/`` map);
* ``has_soft``: float32 scalar, 1.0 when ``soft`` came from ``soft/<stem>.png``;
* ``stem``: the image stem (``str``).

``H, W`` is the model input size. With ``raw_canvas=(W, H)`` (training with
``augment_on: device``) items are left for :func:`okrainsight.batch_augment.augment_batch`
instead: ``image`` uint8 ``(3, H, W)``, ``mask`` uint8 0/1 and ``soft`` uint8 0-255, all at
the canvas size (photos of another size are resized to it), the image JPEG re-encoded
with probability ``augment.jpeg``. Geometric augmentations act on all three maps
together (torchvision ``transforms.v2`` with ``tv_tensors.Mask``; masks are resampled
nearest-neighbour, so the soft map is too); photometric ones (colour, blur, noise,
JPEG) touch only the image. With ``augment.background`` > 0, a training image with okra
first has its surrounding made green at that chance (:mod:`okrainsight.background_swap`).
With ``augment.zoom_out`` > 0, a training image is shrunk by a factor drawn from
``augment.zoom_out_scale`` and reflect-padded back to its size at that chance
(:mod:`okrainsight.zoom_out`), before either augmentation path: smaller pods than the data holds.

Splits: ``DATA/splits/<name>.txt`` (one stem per line, written by ``okra dataset
split``). Without them a deterministic grouped split is made in memory (see
:func:`read_split_stems`): photos of the same pod share a *group* and a group never
straddles splits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from okrainsight.background_swap import swap_background
from okrainsight.dataset import DatasetLayout, assign_groups, group_keys, read_split
from okrainsight.errors import DatasetError
from okrainsight.imageio import read_image, read_mask
from okrainsight.zoom_out import zoom_out

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_GROUP_SUFFIX = re.compile(r"(?:_(?:tipbreak|tipbend|pose\d*|view\d*|v\d+|angle\d*))+$", re.IGNORECASE)


def group_of(stem: str) -> str:
    """The group of a stem: the stem without trailing ``_tipbreak``/``_tipbend``/pose suffixes."""
    return _GROUP_SUFFIX.sub("", stem) or stem


def _hash01(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0**64


def fallback_split(stems: Sequence[str], fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, list[str]]:
    """Deterministic grouped split of ``stems`` into train/val/test (no files needed).

    Groups (see :func:`group_of`) are ordered by a hash of their name; the first
    ``fractions[0]`` of groups go to train, the next ``fractions[1]`` to val, the rest to
    test. With two or more groups, val gets at least one group.
    """
    groups: dict[str, list[str]] = {}
    for s in stems:
        groups.setdefault(group_of(s), []).append(s)
    order = sorted(groups, key=lambda g: (_hash01(g), g))
    n = len(order)
    n_train = int(round(n * fractions[0]))
    n_val = int(round(n * fractions[1]))
    if n >= 2 and n_val == 0:
        n_val = 1
    n_train = min(n_train, n - n_val)
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {k: sorted(s for g in gs for s in groups[g]) for k, gs in parts.items()}


def read_split_stems(root: str | os.PathLike[str], name: str) -> list[str]:
    """Stems of split ``name`` (``train``, ``val``, ``test`` or ``all``) of the dataset at ``root``.

    Reads ``splits/<name>.txt`` (:func:`okrainsight.dataset.read_split`) when the dataset has a
    ``splits/`` folder. Without one, the split is made in memory exactly as ``okra dataset split``
    would (``group_keys`` + ``assign_groups``, 80/10/10, seed 0). Stems listed without an image
    are dropped with a warning.
    """
    layout = DatasetLayout(root).require()
    stems = layout.stems()
    if name == "all":
        return stems
    if name not in SPLITS:
        raise DatasetError(f"{root}: unknown split {name!r}; use train, val, test or all")
    if not (Path(root) / "splits").is_dir():
        return assign_groups(group_keys(root, stems), (0.8, 0.1, 0.1), seed=0)[name]
    listed = [str(s) for s in read_split(root, name)]
    known = set(stems)
    missing = [s for s in listed if s not in known]
    if missing:
        log.warning("%s: %d stems of split %r have no image (e.g. %s)", root, len(missing), name, missing[0])
    return [s for s in listed if s in known]


@dataclass
class AugmentConfig:
    """Strengths of the training augmentations (0 or False turns one off)."""

    hflip: float = 0.5
    vflip: float = 0.5
    rotation: float = 30.0
    scale: tuple[float, float] = (0.6, 1.0)
    color_jitter: float = 0.3
    hue: float = 0.04
    blur: float = 0.2
    noise: float = 0.03
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    background: float = 0.0  # chance that an okra image's surrounding is made green (background_swap)
    zoom_out: float = 0.0  # chance that an image is shrunk and reflect-padded back (okrainsight.zoom_out)
    zoom_out_scale: tuple[float, float] = (0.5, 0.9)  # its scale factor, uniform in this range (0.5..1)


def build_transform(
    size_wh: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    train: bool,
    augment: AugmentConfig | None = None,
) -> v2.Transform:
    """The joint transform: ``(Image uint8, Mask uint8, Mask float) -> normalised float tensors``.

    Training: random affine (rotation, scale), random resized crop to ``size_wh``, flips,
    then photometric changes on the image only. Evaluation: a plain resize.
    """
    w, h = size_wh
    to_float = v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)
    norm = v2.Normalize(list(mean), list(std))
    if not train:
        return v2.Compose([v2.Resize((h, w), antialias=True), to_float, norm])
    a = augment or AugmentConfig()
    ops: list[Any] = []
    if a.rotation > 0:
        ops.append(v2.RandomApply([v2.RandomAffine(degrees=a.rotation, scale=(0.85, 1.15))], p=0.5))
    ops.append(v2.RandomResizedCrop((h, w), scale=tuple(a.scale), ratio=(0.75, 1.333), antialias=True))
    if a.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(a.hflip))
    if a.vflip > 0:
        ops.append(v2.RandomVerticalFlip(a.vflip))
    if a.color_jitter > 0:
        cj = a.color_jitter
        ops.append(v2.RandomApply([v2.ColorJitter(cj, cj, cj, a.hue)], p=0.8))
    if a.blur > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=a.blur))
    if a.jpeg > 0:
        ops.append(v2.RandomApply([v2.JPEG(tuple(a.jpeg_quality))], p=a.jpeg))
    ops.append(to_float)
    if a.noise > 0:
        ops.append(v2.RandomApply([v2.GaussianNoise(0.0, a.noise, clip=True)], p=0.5))
    ops.append(norm)
    return v2.Compose(ops)


def _numpy_rng() -> np.random.Generator:
    """A numpy generator drawn from torch's: seeded per worker by the loader, so runs repeat with
    their seed (for the numpy augmentations: background swap, zoom-out)."""
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))


@dataclass(frozen=True)
class Sample:
    """Where one item's files live (mask None = a negative: all background)."""

    stem: str
    image: Path
    mask: Path | None
    soft: Path | None


class OkraSegmentationDataset(Dataset):
    """Items of one split of a dataset folder, plus optional folders of real negatives.

    Args:
        root: dataset folder (``images/``, ``masks/``, optional ``soft/``).
        split: ``train``, ``val``, ``test`` or ``all``; or an explicit list of stems.
        size_wh: model input ``(width, height)``.
        mean, std: normalisation of the model card.
        train: apply random augmentation.
        negatives: folders of images without okra (every pixel background); their
            images join this dataset (use them for the training split only).
        use_soft: read ``soft/<stem>.png`` where present.
        augment: augmentation strengths.
        raw_canvas: ``(width, height)``: return un-augmented uint8 maps of this size for
            augmentation on the training device (module doc); training only.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | Sequence[str],
        size_wh: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        train: bool = False,
        negatives: Sequence[str | os.PathLike[str]] = (),
        use_soft: bool = True,
        augment: AugmentConfig | None = None,
        raw_canvas: tuple[int, int] | None = None,
    ) -> None:
        layout = DatasetLayout(root).require()
        stems = read_split_stems(root, split) if isinstance(split, str) else list(split)
        paths = {p.stem: p for p in layout.image_paths()}
        samples: list[Sample] = []
        for stem in stems:
            if stem not in paths:
                raise DatasetError(f"{layout.images_dir}: no image with stem {stem!r}")
            mask = layout.mask_path(stem)
            if not mask.is_file():
                raise DatasetError(f"{mask}: mask missing for image {paths[stem].name}; label it first")
            soft = layout.soft_path(stem)
            samples.append(Sample(stem, paths[stem], mask, soft if use_soft and soft.is_file() else None))
        for folder in negatives:
            from okrainsight.imageio import iter_image_files

            if not Path(folder).is_dir():
                raise DatasetError(f"{folder}: negatives folder does not exist")
            for p in iter_image_files([folder]):
                samples.append(Sample(f"neg:{p.stem}", p, None, None))
        self.samples = samples
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.raw_canvas = (int(raw_canvas[0]), int(raw_canvas[1])) if raw_canvas else None
        self.augment = augment or AugmentConfig()
        self.train = bool(train)
        self.transform = (
            build_transform(self.size_wh, mean, std, train=train, augment=augment)
            if raw_canvas is None
            else None
        )
        # raw items get the loader's own JPEG step (the rest happens on the device)
        a = self.augment
        self.raw_jpeg = (
            v2.RandomApply([v2.JPEG(tuple(a.jpeg_quality))], p=a.jpeg) if raw_canvas and a.jpeg > 0 else None
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        image = read_image(s.image)
        h, w = image.shape[:2]
        mask = read_mask(s.mask) if s.mask is not None else np.zeros((h, w), np.uint8)
        if mask.shape != (h, w):
            raise DatasetError(f"{s.mask}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}")
        if s.soft is not None:
            soft = read_mask(s.soft, binarize=False).astype(np.float32) / 255.0
            if soft.shape != (h, w):
                raise DatasetError(f"{s.soft}: soft map is {soft.shape[1]}x{soft.shape[0]}, image is {w}x{h}")
        else:
            soft = (mask > 0).astype(np.float32)
        if self.train and self.augment.background > 0 and torch.rand(()).item() < self.augment.background:
            image = swap_background(image, mask, _numpy_rng())
            # a teacher's soft map described the old surroundings: the new ones are not okra
            soft = np.where(mask > 0, soft, np.float32(0.0)).astype(np.float32)
        if self.train and self.augment.zoom_out > 0 and torch.rand(()).item() < self.augment.zoom_out:
            rng = _numpy_rng()
            lo, hi = self.augment.zoom_out_scale
            image, mask, soft = zoom_out(image, mask, soft, float(rng.uniform(lo, hi)), rng)
        if self.raw_canvas is not None:
            return self._raw_item(s, image, mask, soft)
        img_t = tv_tensors.Image(torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1))
        mask_t = tv_tensors.Mask(torch.from_numpy((mask > 0).astype(np.uint8))[None])
        soft_t = tv_tensors.Mask(torch.from_numpy(soft)[None])
        img_o, mask_o, soft_o = self.transform(img_t, mask_t, soft_t)
        return {
            "image": img_o.as_subclass(torch.Tensor).float(),
            "mask": mask_o.as_subclass(torch.Tensor).float(),
            "soft": soft_o.as_subclass(torch.Tensor).float().clamp(0, 1),
            "has_soft": torch.tensor(1.0 if s.soft is not None else 0.0),
            "stem": s.stem,
        }

    def _raw_item(self, s: Sample, image: np.ndarray, mask: np.ndarray, soft: np.ndarray) -> dict[str, Any]:
        """Canvas-size uint8 maps for augmentation on the device (``raw_canvas``)."""
        w, h = self.raw_canvas  # type: ignore[misc]
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
            soft = cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)
        img = torch.from_numpy(np.require(image, np.uint8, ["C", "W"])).permute(2, 0, 1).contiguous()
        if self.raw_jpeg is not None:
            img = self.raw_jpeg(img)
        return {
            "image": img,
            "mask": torch.from_numpy((mask > 0).astype(np.uint8))[None],
            "soft": torch.from_numpy(np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8))[None],
            "has_soft": torch.tensor(1.0 if s.soft is not None else 0.0),
            "stem": s.stem,
        }


__all__ = [
    "AugmentConfig",
    "OkraSegmentationDataset",
    "Sample",
    "build_transform",
    "fallback_split",
    "group_of",
    "read_split_stems",
]
