"""``okra grade train`` / ``okra grade eval`` / the default grader: the batch jobs of grading.

Train: labelled photos -> one pod each (mask file or segmentation model, through the gate)
-> features -> a held-out set of whole okra (``test_fraction`` of the photos, grouped) ->
a calibrated logistic model with C chosen by grouped cross-validation on the rest -> the
grader folder (``grader.json`` + ``grader.onnx``; ``train_pods.csv`` with out-of-fold
probabilities). The held-out okra are listed in the card so ``eval`` can use the same split.

Eval: a grader and labelled photos -> ROC-AUC, accuracy, confusion matrix, reliability
diagram (``reliability.png``), ``pods.csv`` and ``metrics.json``. Photos of okra the grader
was trained on are left out (the same grouped split).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from okrainsight import __version__
from okrainsight.errors import ConfigError, DatasetError, ImageReadError, ModelError, OkraError
from okrainsight.grading.data import LabelledPhoto, PodSample, collect_labelled_photos, pod_sample
from okrainsight.grading.features import FEATURE_NAMES, pod_features
from okrainsight.grading.gate import GateConfig, colour_plausible, gate_pod
from okrainsight.grading.model import Grader, Reference, fit_linear, load_grader
from okrainsight.imageio import atomic_output, atomic_write_text
from okrainsight.synth.scenes import SURFACE_DISTRACTORS, render_lookalike_scene, render_scene

log = logging.getLogger(__name__)

#: What every grader card says about itself unless told otherwise.
DEFAULT_NOTE = (
    "Demonstrates the grading pipeline. It is no horticultural authority until trained and "
    "evaluated on real labelled photos of okra."
)


# ----------------------------------------------------------------------------------
# Metrics (numpy only)
# ----------------------------------------------------------------------------------


def roc_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None with one class only."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), np.float64)
    sp = p[order]
    i = 0
    while i < len(sp):
        j = i
        while j + 1 < len(sp) and sp[j + 1] == sp[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """ROC-AUC, accuracy, Brier score and confusion matrix (rows true tough/tender, columns predicted)."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    pred = p >= threshold
    cm = [
        [int(np.sum(~y & ~pred)), int(np.sum(~y & pred))],
        [int(np.sum(y & ~pred)), int(np.sum(y & pred))],
    ]
    return {
        "n": len(y),
        "n_tender": int(y.sum()),
        "roc_auc": roc_auc(y, p),
        "accuracy": float(np.mean(pred == y)) if len(y) else None,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else None,
        "threshold": threshold,
        "confusion_matrix": {"labels": ["tough", "tender"], "rows_true_cols_predicted": cm},
    }


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per probability bin: count, mean predicted probability, observed tender rate."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append(
                {
                    "lo": b / bins,
                    "hi": (b + 1) / bins,
                    "n": int(sel.sum()),
                    "mean_p": float(p[sel].mean()),
                    "rate": float(y[sel].mean()),
                }
            )
    return out


def plot_reliability(y: np.ndarray, p: np.ndarray, path: str | os.PathLike[str], title: str = "") -> None:
    """Write a reliability diagram PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = reliability_bins(y, p)
    fig = Figure(figsize=(4.2, 4.2), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "--", color="0.6", label="perfectly calibrated")
    if rows:
        ax.plot([r["mean_p"] for r in rows], [r["rate"] for r in rows], "o-", color="C2", label="grader")
        for r in rows:
            ax.annotate(
                str(r["n"]), (r["mean_p"], r["rate"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted tender probability")
    ax.set_ylabel("observed tender fraction")
    ax.set_title(title or "Reliability", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with atomic_output(path, "wb") as fh:
        fh.write(buf.getvalue())


# ----------------------------------------------------------------------------------
# Collecting pods
# ----------------------------------------------------------------------------------


@dataclass
class Collected:
    samples: list[PodSample]
    no_pod: list[LabelledPhoto]
    errors: list[str]


def collect_pods(
    data: str | os.PathLike[str],
    photos: list[LabelledPhoto],
    model: str | os.PathLike[str] | Any | None = None,
    *,
    gate: GateConfig | None = None,
    progress: bool = True,
    keep_crops: bool = False,
) -> Collected:
    """Segment every labelled photo and measure its pod; bad photos are recorded and skipped."""
    from tqdm import tqdm

    from okrainsight.runtime import Segmenter

    segmenter = None
    if model is not None:
        segmenter = model if isinstance(model, Segmenter) else Segmenter.from_path(model)
    out = Collected([], [], [])
    root = Path(data)
    for photo in tqdm(photos, desc="pods", unit="photo", disable=not progress, file=sys.stderr):
        try:
            s = pod_sample(photo, root, segmenter, gate, keep_crop=keep_crops)
        except (ImageReadError, DatasetError, ValueError, OSError) as exc:
            if isinstance(exc, DatasetError) and "no segmentation model" in str(exc):
                raise
            msg = str(exc) if isinstance(exc, OkraError) else f"{photo.path}: {exc}"
            out.errors.append(msg)
            log.warning("%s", msg)
            continue
        if s is None:
            out.no_pod.append(photo)
        else:
            out.samples.append(s)
    return out


def _holdout(samples: list[PodSample], test_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Split the okra (groups) into train and held-out test sets, stratified by grade: about
    ``test_fraction`` of each grade's okra (at least one when that grade has two or more) are held out.
    A group's grade is its photos' majority grade."""
    import random

    votes: dict[str, list[int]] = {}
    for s in samples:
        votes.setdefault(s.photo.group, []).append(int(s.photo.tender))
    if test_fraction <= 0:
        return set(votes), set()
    test: set[str] = set()
    rng = random.Random(seed)
    for grade in (0, 1):
        keys = sorted(g for g, v in votes.items() if int(round(float(np.mean(v)))) == grade)
        rng.shuffle(keys)
        k = int(round(test_fraction * len(keys)))
        if len(keys) >= 2:
            k = min(max(k, 1), len(keys) - 1)
        test |= set(keys[:k])
    return set(votes) - test, test


# ----------------------------------------------------------------------------------
# Train
# ----------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def train_grader(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    cnn: bool = False,
    cnn_epochs: int = 30,
    okra_model: Grader | None | str = "default",
    name: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Train a grader on labelled photos in ``data`` and save it to ``out``.

    Args:
        data: labelled photos (see :mod:`okrainsight.grading.data`).
        out: the grader folder to write.
        model: segmentation model for photos without ``masks/<stem>.png``.
        folds: grouped cross-validation folds for choosing C and calibrating.
        test_fraction: share of photos (whole okra) held out for the test metrics (0: none).
        cnn: also train the small CNN on masked pod crops (needs torch) and average it in.
        okra_model: grader whose okra-likeness model the gate reuses, with its threshold and
            okra CNN (``"default"``: the built-in grader's, when installed; None: no okra-likeness check).

    Returns:
        The metrics written into the card (``cv_auc``, ``test`` ...).
    """
    if not 0.0 <= test_fraction < 0.9:
        raise ConfigError(f"--test-fraction must lie in [0, 0.9), got {test_fraction}")
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    photos = collect_labelled_photos(data)
    col = collect_pods(data, photos, model, progress=progress, keep_crops=cnn)
    samples = col.samples
    if len(samples) < 4:
        raise DatasetError(
            f"{data}: only {len(samples)} labelled photo(s) with a plausible pod; need more to train"
        )
    train_g, test_g = _holdout(samples, test_fraction, seed)
    tr = [s for s in samples if s.photo.group in train_g]
    te = [s for s in samples if s.photo.group in test_g]
    X = np.stack([s.features for s in tr])
    y = np.array([s.photo.tender for s in tr], int)
    g = np.array([s.photo.group for s in tr])
    lin, rep = fit_linear(X, y, g, folds=folds, seed=seed)
    metrics: dict[str, Any] = {
        "cv_auc": rep.best_auc,
        "cv_auc_by_candidate": rep.cv_auc,
        "model_form": "quadratic" if rep.quadratic else "linear",
        "C": rep.C,
        "cv_folds": rep.folds,
        "cv": classification_metrics(y, rep.oof_probability),
        "n_train_pods": len(tr),
        "n_test_pods": len(te),
        "n_photos_without_pod": len(col.no_pod),
        "n_errors": len(col.errors),
    }
    base: Grader | None = None
    if isinstance(okra_model, str):
        try:
            base = load_grader(okra_model)
        except ModelError as exc:
            log.warning("no okra-likeness model for the gate (%s)", exc)
    elif isinstance(okra_model, Grader):
        base = okra_model
    grader = Grader(
        tender=lin,
        okra=None if base is None else base.okra,
        min_okra_likeness=0.5 if base is None or base.okra is None else base.min_okra_likeness,
        reference=Reference.fit(X),
        card={
            "name": name or Path(out).name,
            "kind": "features+logistic",
            "note": DEFAULT_NOTE,
            "version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": str(data),
            "segmentation": str(model) if model is not None else "masks/",
            "seed": seed,
            "split": {"train_groups": sorted(train_g), "test_groups": sorted(test_g)},
            "label_sources": sorted({s.photo.source for s in samples}),
        },
    )
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    if base is not None and base.okra is not None and base.okra_cnn is not None:
        # the likeness threshold belongs to the mean of both okra models: the CNN comes along
        # (Grader.save copies its okra_cnn.onnx)
        grader.okra_cnn = base.okra_cnn
        grader.card["okra_cnn"] = dict(base.card.get("okra_cnn") or {})
    if cnn:
        from okrainsight.grading.cnn import CNN_ONNX, CnnRunner, train_cnn

        info = train_cnn(tr, outp, epochs=cnn_epochs, seed=seed)
        grader.card["cnn"] = info
        grader.card["kind"] = "features+logistic+cnn"
        grader.cnn = CnnRunner(outp / CNN_ONNX)
    if te:
        Xt = np.stack([s.features for s in te])
        yt = np.array([s.photo.tender for s in te], int)
        crops = np.stack([s.crop for s in te]) if cnn else None
        metrics["test"] = classification_metrics(yt, grader.predict_combined(Xt, crops), grader.threshold)
        if cnn:
            metrics["test_features_only"] = classification_metrics(
                yt, grader.predict_proba(Xt), grader.threshold
            )
    grader.card["metrics"] = metrics
    grader.save(outp)
    _write_csv(
        outp / "train_pods.csv",
        ["stem", "group", "grade", "oof_tender_probability", "okra_score"],
        [
            [s.photo.stem, s.photo.group, s.photo.grade, round(float(p), 6), round(s.okra_score, 4)]
            for s, p in zip(tr, rep.oof_probability, strict=True)
        ],
    )
    return metrics


# ----------------------------------------------------------------------------------
# Eval
# ----------------------------------------------------------------------------------


def evaluate_grader(
    grader_spec: str | os.PathLike[str] | Grader,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    include_train: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a grader on labelled photos; write ``pods.csv``, ``metrics.json`` and
    ``reliability.png`` to ``out`` (when given).

    Photos of okra listed among the grader's training groups are left out unless
    ``include_train`` (the same grouped split as ``train``).

    Raises:
        DatasetError: nothing left to evaluate.
    """
    grader = grader_spec if isinstance(grader_spec, Grader) else load_grader(grader_spec)
    photos = collect_labelled_photos(data)
    trained = set((grader.card.get("split") or {}).get("train_groups") or [])
    if trained and not include_train and str(Path(data)) == str(grader.card.get("data")):
        kept = [p for p in photos if p.group not in trained]
        log.info("%d photo(s) of training okra left out", len(photos) - len(kept))
        photos = kept
    if not photos:
        raise DatasetError(f"{data}: every labelled photo shows an okra the grader was trained on")
    col = collect_pods(
        data, photos, model, gate=grader.gate, progress=progress, keep_crops=grader.cnn is not None
    )
    rows: list[list[Any]] = []
    ys, ps = [], []
    for s in col.samples:
        x = s.features[None]
        p = float(grader.predict_combined(x, None if s.crop is None else s.crop[None])[0])
        like = grader.okra_likeness(x)
        ys.append(s.photo.tender)
        ps.append(p)
        rows.append(
            [
                s.photo.stem,
                str(s.photo.path),
                s.photo.group,
                s.photo.grade,
                round(p, 6),
                "tender" if p >= grader.threshold else "tough",
                round(s.okra_score, 4),
                "" if like is None else round(float(like[0]), 4),
                " ".join(str(v) for v in s.bbox),
                "",
            ]
        )
    for ph in col.no_pod:
        rows.append([ph.stem, str(ph.path), ph.group, ph.grade, "", "", "", "", "", "no plausible pod"])
    metrics = classification_metrics(np.array(ys, bool), np.array(ps), grader.threshold)
    metrics.update(
        {
            "grader": grader.card.get("name"),
            "data": str(data),
            "n_photos": len(photos),
            "n_without_pod": len(col.no_pod),
            "n_errors": len(col.errors),
            "errors": col.errors,
            "reliability": reliability_bins(np.array(ys), np.array(ps)),
        }
    )
    if out is not None:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        header = [
            "stem",
            "path",
            "group",
            "grade",
            "tender_probability",
            "predicted",
            "okra_score",
            "okra_likeness",
            "bbox",
            "note",
        ]
        _write_csv(o / "pods.csv", header, rows)
        atomic_write_text(o / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if ps:
            plot_reliability(np.array(ys), np.array(ps), o / "reliability.png", title=f"{len(ps)} pods")
    return metrics


# ----------------------------------------------------------------------------------
# The default grader, from rendered pods
# ----------------------------------------------------------------------------------


def _render(render_scene: Any, seed: int, size: tuple[int, int], kind: str) -> Any:
    """One rendered scene, or None (logged) when the renderer fails on this seed."""
    try:
        return render_scene(seed, size, kind=kind)
    except (IndexError, ValueError) as exc:
        log.warning("renderer failed on seed %d (%s, %dx%d): %s; scene skipped", seed, kind, *size, exc)
        return None


def rendered_pod_features(
    n: int,
    seed: int,
    size: tuple[int, int],
    *,
    kinds: tuple[str, ...] = ("white", "wood", "cloth"),
    min_visible: float = 0.9,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features of every whole pod in ``n`` rendered scenes (kinds taken in turn).

    Returns:
        ``(X, tender, age, group)``: ``(N, F)`` features, ``(N,)`` bool, ``(N,)`` age, ``(N,)`` scene seeds.
    """
    X, t, a, g, _ = _rendered_pods(
        n, seed, size, kinds=kinds, min_visible=min_visible, progress=progress, crops=False
    )
    return X, t, a, g


def _rendered_pods(
    n: int,
    seed: int,
    size: tuple[int, int],
    *,
    kinds: tuple[str, ...] = ("white", "wood", "cloth"),
    min_visible: float = 0.9,
    progress: bool = False,
    crops: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`rendered_pod_features` plus, with ``crops``, each pod's CNN input ``(N, 3, 32, 64)``."""
    from tqdm import tqdm

    from okrainsight.grading.cnn import cnn_input

    X, t, a, g, c = [], [], [], [], []
    for i in tqdm(range(n), desc="render", unit="scene", disable=not progress, file=sys.stderr):
        s = seed + i
        sc = _render(render_scene, s, size, kinds[i % len(kinds)])
        if sc is None:
            continue
        for pod in sc.pods:
            if pod["visible_fraction"] < min_visible or pod["area_px"] < 0.002 * size[0] * size[1]:
                continue
            m = sc.instances == pod["id"]
            X.append(pod_features(sc.image, m))
            t.append(bool(pod["tender"]))
            a.append(float(pod["age"]))
            g.append(s)
            if crops:
                ys, xs = np.nonzero(m)
                bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
                c.append(cnn_input(sc.image, m[bbox[1] : bbox[3], bbox[0] : bbox[2]], bbox))
    return np.array(X), np.array(t), np.array(a), np.array(g), (np.stack(c) if crops and c else None)


#: Look-alikes the okra likeness learns to refuse, one kind per scene in :func:`render_lookalike_scene`:
#: those that lie on tables, and the leeks and asparagus of negative scenes (renderer v7).
LOOKALIKE_KINDS = (*SURFACE_DISTRACTORS, "leek", "asparagus")


def _cnn_crop(image: np.ndarray, pod: Any) -> np.ndarray:
    from okrainsight.grading.cnn import cnn_input

    return cnn_input(image, pod.crop, pod.bbox)


def _gated_features(image: np.ndarray, pod: Any, gate: GateConfig | None) -> np.ndarray | None:
    """The features of a :class:`okrainsight.runtime.Pod`, or None when ``gate`` is given and the
    pod fails its shape tests (area, elongation, solidity) or its colour test: the okra-likeness
    model only ever sees pods past those tests, so it is fitted on them alone."""
    if gate is not None:
        decision = gate_pod(pod.crop, image.shape, length_px=pod.length_px, config=gate)
        if not decision.passed:
            return None
    x = pod_features(image, pod.crop, bbox=pod.bbox, length_px=pod.length_px)
    if gate is not None and not colour_plausible(x, gate):
        return None
    return x


def rendered_lookalike_features(
    n: int,
    seed: int,
    size: tuple[int, int],
    *,
    per_kind: int = 0,
    gate: GateConfig | None = None,
    crops: list[np.ndarray] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of the distractors (beans, chillies, cucumbers, leaves ...) in ``n`` negative
    renders, plus ``per_kind`` single-kind scenes of each of :data:`LOOKALIKE_KINDS`
    (:func:`render_lookalike_scene`, seeds from ``seed + n``).

    Every distractor component (:func:`okrainsight.runtime.find_pods` of the distractor mask,
    as a segmenter that wrongly took the distractors for okra would give them) counts; with
    ``gate``, only those that pass its shape and colour tests. With a ``crops`` list, each kept
    component's CNN input (:func:`okrainsight.grading.cnn.cnn_input`) is appended to it.

    Returns:
        ``(X, group)``: ``(N, F)`` features and ``(N,)`` scene keys (int).
    """
    from tqdm import tqdm

    from okrainsight.runtime import find_pods

    X, g = [], []

    def add(image: np.ndarray, mask: np.ndarray, key: int) -> None:
        for pod in find_pods(mask):
            x = _gated_features(image, pod, gate)
            if x is not None:
                X.append(x)
                g.append(key)
                if crops is not None:
                    crops.append(_cnn_crop(image, pod))

    for i in tqdm(range(n), desc="look-alikes", unit="scene", disable=not progress, file=sys.stderr):
        sc = _render(render_scene, seed + i, size, "negative")
        if sc is not None:
            add(sc.image, sc.distractor_mask, seed + i)
    jobs = [(k, name) for k in range(per_kind) for name in LOOKALIKE_KINDS]
    for j, (k, name) in enumerate(
        tqdm(jobs, desc="look-alikes by kind", unit="scene", disable=not progress, file=sys.stderr)
    ):
        s = seed + n + k
        try:
            image, mask = render_lookalike_scene(s, size, name)
        except (IndexError, ValueError) as exc:
            log.warning("renderer failed on look-alike %s seed %d: %s; scene skipped", name, s, exc)
            continue
        add(image, mask, seed + n + j)
    return np.array(X).reshape(-1, len(FEATURE_NAMES)), np.array(g)


#: Scene kinds whose pods are the okra-likeness model's positives.
OKRA_KINDS = ("white", "bunch", "cloth", "wood", "plate", "pile", "plant")


def rendered_okra_features(
    n: int,
    seed: int,
    size: tuple[int, int],
    *,
    kinds: tuple[str, ...] = OKRA_KINDS,
    gate: GateConfig | None = None,
    min_visible: float = 0.8,
    crops: list[np.ndarray] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of the okra pods in ``n`` rendered scenes of every kind (taken in turn), as a
    segmenter would hand them over: each pod's ground-truth mask, cleaned and cut to its largest
    piece by :func:`okrainsight.runtime.find_pods`. Pods less than ``min_visible`` visible are
    left out; with ``gate``, so are those that fail its shape and colour tests. With a ``crops``
    list, each kept pod's CNN input is appended to it.

    Returns:
        ``(X, group)``: ``(N, F)`` features and ``(N,)`` scene seeds.
    """
    from tqdm import tqdm

    from okrainsight.runtime import find_pods

    X, g = [], []
    for i in tqdm(range(n), desc="okra pods", unit="scene", disable=not progress, file=sys.stderr):
        sc = _render(render_scene, seed + i, size, kinds[i % len(kinds)])
        if sc is None:
            continue
        for pod in sc.pods:
            if pod["visible_fraction"] < min_visible:
                continue
            pieces = find_pods(sc.instances == pod["id"])
            x = _gated_features(sc.image, pieces[0], gate) if pieces else None
            if x is not None:
                X.append(x)
                g.append(seed + i)
                if crops is not None:
                    crops.append(_cnn_crop(sc.image, pieces[0]))
    return np.array(X).reshape(-1, len(FEATURE_NAMES)), np.array(g)


def _held_out_scenes(groups: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Bool ``(N,)``: the items of a random ``share`` of the scenes (``groups`` ``(N,)`` scene keys),
    held out from CNN training for its metrics; the same ``seed`` gives the same scenes."""
    scenes = np.unique(groups)
    held = set(np.random.default_rng(seed).permutation(scenes)[: int(round(share * len(scenes)))])
    return np.array([v in held for v in groups])


def _holdout_aucs(y: np.ndarray, p_cnn: np.ndarray, p_features: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC on held-out items of the CNN, the feature model (out of fold) and their mean."""
    return {
        "holdout_auc": roc_auc(y, p_cnn),
        "holdout_auc_features_oof": roc_auc(y, p_features),
        "holdout_auc_combined": roc_auc(y, 0.5 * (p_cnn + p_features)),
    }


@dataclass
class OkraLikeness:
    """The fitted okra-vs-look-alike model and what the card says about it."""

    model: Any
    min_okra_likeness: float
    metrics: dict[str, Any]
    trained_on: str
    cnn: dict[str, Any] | None = None


def fit_okra_likeness(
    n: int,
    n_negative: int,
    seed: int,
    size: tuple[int, int],
    *,
    gate: GateConfig | None = None,
    per_kind: int | None = None,
    recall: float = 0.9,
    folds: int = 5,
    cnn_out: str | os.PathLike[str] | None = None,
    cnn_epochs: int = 10,
    cnn_holdout: float = 0.2,
    progress: bool = False,
) -> OkraLikeness:
    """Fit the gate's okra-likeness model on renders.

    Positives: pods of ``n`` scenes of every okra kind (:func:`rendered_okra_features`, seeds from
    ``seed + 2_000_000``). Negatives: the distractors of ``n_negative`` negative renders and of
    ``per_kind`` (default ``max(2, n_negative // 5)``) single-kind scenes of each look-alike
    (:func:`rendered_lookalike_features`, seeds from ``seed + 1_000_000``). Both sides only keep
    what passes ``gate``'s shape and colour tests (default :class:`GateConfig`). The threshold
    ``min_okra_likeness`` keeps ``recall`` of the positives' calibrated out-of-fold probabilities.

    With ``cnn_out`` (a grader folder) the okra CNN is trained too (torch; the tender CNN's network
    and input, :mod:`okrainsight.grading.cnn`) on the crops of all but a ``cnn_holdout`` share of
    the scenes and written there as ``okra_cnn.onnx`` / ``okra_cnn.safetensors``; the likeness is
    then the mean of both models, and the threshold keeps ``recall`` of the held-out scenes' pods
    (the feature model's out-of-fold probability averaged with the CNN's).
    """
    cfg = gate or GateConfig()
    k = max(2, n_negative // 5) if per_kind is None else int(per_kind)
    cp: list[np.ndarray] | None = [] if cnn_out is not None else None
    cn: list[np.ndarray] | None = [] if cnn_out is not None else None
    Xp, gp = rendered_okra_features(n, seed + 2_000_000, size, gate=cfg, crops=cp, progress=progress)
    Xn, gn = rendered_lookalike_features(
        n_negative, seed + 1_000_000, size, per_kind=k, gate=cfg, crops=cn, progress=progress
    )
    X = np.concatenate([Xp, Xn])
    y = np.concatenate([np.ones(len(Xp), int), np.zeros(len(Xn), int)])
    g = np.concatenate([gp, gn])
    model, rep = fit_linear(X, y, g, folds=folds, seed=seed)
    oof = rep.oof_probability
    test = np.ones(len(y), bool)
    cnn_info = None
    if cnn_out is not None and cp is not None and cn is not None:
        from okrainsight.grading.cnn import CNN_ONNX, CNN_WEIGHTS, CnnRunner, fit_cnn
        from okrainsight.grading.model import OKRA_CNN_ONNX, OKRA_CNN_WEIGHTS

        crops = np.stack(cp + cn)
        test = _held_out_scenes(g, cnn_holdout, seed)
        outp = Path(cnn_out)
        tmp = outp / ".okra_cnn"
        cnn_info = fit_cnn(crops[~test], y[~test].astype(float), tmp, epochs=cnn_epochs, seed=seed)
        os.replace(tmp / CNN_ONNX, outp / OKRA_CNN_ONNX)
        os.replace(tmp / CNN_WEIGHTS, outp / OKRA_CNN_WEIGHTS)
        tmp.rmdir()
        p_cnn = CnnRunner(outp / OKRA_CNN_ONNX).predict(crops[test])
        cnn_info.update(
            {
                "n_train": int((~test).sum()),
                "n_holdout": int(test.sum()),
                **_holdout_aucs(y[test], p_cnn, oof[test]),
                "combine": "mean with the feature model's okra likeness",
            }
        )
        oof = oof.copy()
        oof[test] = 0.5 * (oof[test] + p_cnn)
    yt, ot = y[test], oof[test]
    thr = float(np.quantile(ot[yt == 1], 1.0 - recall)) if (yt == 1).any() else 0.5
    thr = float(np.clip(thr, 0.05, 0.95))
    rejected = float(np.mean(ot[yt == 0] < thr)) if (yt == 0).any() else None
    metrics = {
        "okra_vs_lookalike_cv_auc": rep.best_auc,
        "okra_model_form": "quadratic" if rep.quadratic else "linear",
        "okra_n_pods": len(Xp),
        "n_lookalikes": len(Xn),
        "okra_cv_recall_at_threshold": float(np.mean(ot[yt == 1] >= thr)),
        "lookalike_cv_rejected_at_threshold": rejected,
    }
    trained_on = (
        f"Okra likeness: {len(Xp)} pods of {n} scenes of kinds {', '.join(OKRA_KINDS)} against "
        f"{len(Xn)} look-alikes from {n_negative} negative renders and {k} single-kind scenes of each "
        f"of {', '.join(LOOKALIKE_KINDS)}, all past the shape and colour tests; threshold "
        f"{thr:.3f} keeps {recall:.0%} of the pods out of fold"
        + (" (with the okra CNN, on held-out scenes)." if cnn_info else ".")
    )
    return OkraLikeness(model, thr, metrics, trained_on, cnn_info)


def train_synthetic_grader(
    out: str | os.PathLike[str],
    *,
    n: int = 600,
    n_negative: int = 200,
    seed: int = 0,
    size: tuple[int, int] = (256, 192),
    folds: int = 5,
    cnn: bool = False,
    cnn_epochs: int = 30,
    cnn_holdout: float = 0.2,
    okra_cnn: bool = True,
    okra_cnn_epochs: int = 10,
    progress: bool = True,
) -> Grader:
    """Train the default grader on rendered pods (tenderness from the renderer's age cue) and save it.

    The gate's okra-likeness model and its threshold come from :func:`fit_okra_likeness` (pods of
    ``n`` scenes of every okra kind against the look-alikes of ``n_negative`` negative renders and
    single-kind scenes; other seeds), with the okra CNN (``okra_cnn``, ``okra_cnn_epochs``) averaged
    in. ``seed`` makes the whole run reproducible.

    With ``cnn`` the pod-crop CNN (:mod:`okrainsight.grading.cnn`) is trained too, on the pods of
    all but a ``cnn_holdout`` share of the scenes; the held-out scenes' pods give its ROC-AUC alone
    and averaged with the feature model's out-of-fold probability (card ``metrics.cnn``).
    """
    X, t, age, g, crops = _rendered_pods(n, seed, size, progress=progress, crops=cnn)
    lin, rep = fit_linear(X, t.astype(int), g, folds=folds, seed=seed)
    like = fit_okra_likeness(
        n,
        n_negative,
        seed,
        size,
        folds=folds,
        cnn_out=out if okra_cnn else None,
        cnn_epochs=okra_cnn_epochs,
        progress=progress,
    )
    clear = np.abs(age - 0.5) > 0.15
    grader = Grader(
        tender=lin,
        okra=like.model,
        reference=Reference.fit(X),
        min_okra_likeness=like.min_okra_likeness,
        card={
            "name": "grader-default",
            "kind": "features+logistic",
            "note": DEFAULT_NOTE,
            "trained_on": (
                f"{len(X)} whole pods from {n} rendered scenes (kinds white, wood, cloth; "
                f"{size[0]}x{size[1]}, seed {seed}); tender = renderer age < 0.5. " + like.trained_on
            ),
            "command": f"okra grade train-synth OUT --n {n} --n-negative {n_negative} --seed {seed} "
            f"--size {size[0]}x{size[1]}",
            "version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metrics": {
                "cv_auc": rep.best_auc,
                "model_form": "quadratic" if rep.quadratic else "linear",
                "cv_auc_clear_age": roc_auc(t[clear], rep.oof_probability[clear]),
                "cv": classification_metrics(t, rep.oof_probability),
                "n_pods": len(X),
                **like.metrics,
            },
        },
    )
    if like.cnn is not None:
        from okrainsight.grading.cnn import CnnRunner
        from okrainsight.grading.model import OKRA_CNN_ONNX

        grader.okra_cnn = CnnRunner(Path(out) / OKRA_CNN_ONNX)
        grader.card["okra_cnn"] = like.cnn
    if cnn:
        from okrainsight.grading.cnn import CNN_ONNX, CnnRunner, fit_cnn

        test = _held_out_scenes(g, cnn_holdout, seed)
        n_held = len(set(g[test].tolist()))
        outp = Path(out)
        outp.mkdir(parents=True, exist_ok=True)
        info = fit_cnn(crops[~test], t[~test].astype(float), outp, epochs=cnn_epochs, seed=seed)
        grader.cnn = CnnRunner(outp / CNN_ONNX)
        p_cnn = grader.cnn.predict(crops[test])
        p_feat = rep.oof_probability[test]
        info.update(
            {
                "n_train_pods": int((~test).sum()),
                "n_holdout_pods": int(test.sum()),
                **_holdout_aucs(t[test], p_cnn, p_feat),
            }
        )
        grader.card["cnn"] = info
        grader.card["kind"] = "features+logistic+cnn"
        grader.card["command"] += f" --cnn --cnn-epochs {cnn_epochs}"
        grader.card["trained_on"] += (
            f" CNN: pods of {len(np.unique(g)) - n_held} scenes, {n_held} scenes held out for its metrics."
        )
    grader.save(out)
    return grader


__all__ = [
    "DEFAULT_NOTE",
    "LOOKALIKE_KINDS",
    "OKRA_KINDS",
    "OkraLikeness",
    "classification_metrics",
    "collect_pods",
    "evaluate_grader",
    "fit_okra_likeness",
    "plot_reliability",
    "reliability_bins",
    "rendered_lookalike_features",
    "rendered_okra_features",
    "rendered_pod_features",
    "roc_auc",
    "train_grader",
    "train_synthetic_grader",
]
