"""The grader: calibrated linear models over pod features, stored as JSON (+ ONNX), no pickle.

A grader folder holds:

* ``grader.json``: the card (name, feature names, metrics, provenance, training groups,
  gate thresholds, a note on what it is and is not) and the coefficients of two models:
  ``tender`` (tender vs tough) and, optionally, ``okra`` (okra pod vs look-alike, used by the gate);
* ``grader.onnx``: the same two models as one tiny ONNX graph, input ``features`` float32
  ``(N, F)``, outputs ``tender_probability`` and ``okra_likeness`` float32 ``(N, 1)``;
* optionally ``cnn.safetensors`` + ``cnn.onnx`` (see :mod:`okrainsight.grading.cnn`).

Each model is ``p = sigmoid(A * (w . ((f(x) - mean) / scale) + b) + B)``: a logistic regression
on standardised features with Platt calibration ``(A, B)`` fitted on out-of-fold scores. ``f`` is
the identity (linear model) or the quadratic expansion ``f(x) = [z, z**2]`` with
``z = (x - quad_mean) / quad_scale``; cross-validation picks linear or quadratic and C.
Inference needs numpy only; fitting (:func:`fit_linear`) needs scikit-learn (``train`` extra).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from okrainsight.errors import MissingDependencyError, ModelError
from okrainsight.grading.features import FEATURE_NAMES, pod_features
from okrainsight.grading.gate import GateConfig, GateDecision, colour_plausible, gate_pod

log = logging.getLogger(__name__)

GRADER_FILE = "grader.json"
GRADER_ONNX = "grader.onnx"
GRADER_FORMAT = "okrainsight-grader-1"
#: The optional okra-vs-look-alike CNN of the gate (same input and network as the tender CNN).
OKRA_CNN_ONNX = "okra_cnn.onnx"
OKRA_CNN_WEIGHTS = "okra_cnn.safetensors"
#: Folder of the built-in grader (package data).
BUILTIN_GRADER_DIR = Path(__file__).resolve().parent.parent / "models" / "grader-default"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


@dataclass
class LinearModel:
    """A calibrated logistic model over standardised features (see the module docstring).

    Attributes:
        mean, scale: ``(F,)`` standardisation.
        coef: ``(F,)`` weights; intercept: bias.
        calib_a, calib_b: Platt calibration of the raw score.
        C: the inverse regularisation strength chosen by cross-validation.
        quad_mean, quad_scale: ``(F,)`` standardisation of the quadratic expansion, or None
            for a linear model (then ``mean``, ``scale`` and ``coef`` are ``(F,)``, else ``(2F,)``).
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    calib_a: float = 1.0
    calib_b: float = 0.0
    C: float = 1.0
    quad_mean: np.ndarray | None = None
    quad_scale: np.ndarray | None = None

    @property
    def quadratic(self) -> bool:
        return self.quad_mean is not None

    def expand(self, X: np.ndarray) -> np.ndarray:
        """``f(X)``: ``X`` itself, or ``[z, z**2]`` for a quadratic model."""
        X = np.asarray(X, np.float64)
        if self.quad_mean is None or self.quad_scale is None:
            return X
        z = (X - self.quad_mean) / self.quad_scale
        return np.concatenate([z, z * z], axis=1)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Raw (uncalibrated) logit for ``X`` ``(N, F)``."""
        Xs = (self.expand(X) - self.mean) / self.scale
        return Xs @ self.coef + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability ``(N,)`` float64 in 0..1 of the positive class."""
        return _sigmoid(self.calib_a * self.score(X) + self.calib_b)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "calib_a": float(self.calib_a),
            "calib_b": float(self.calib_b),
            "C": float(self.C),
        }
        if self.quad_mean is not None and self.quad_scale is not None:
            d["quad_mean"] = [float(v) for v in self.quad_mean]
            d["quad_scale"] = [float(v) for v in self.quad_scale]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], n_features: int, source: str) -> LinearModel:
        try:
            m = cls(
                mean=np.asarray(d["mean"], np.float64),
                scale=np.asarray(d["scale"], np.float64),
                coef=np.asarray(d["coef"], np.float64),
                intercept=float(d["intercept"]),
                calib_a=float(d.get("calib_a", 1.0)),
                calib_b=float(d.get("calib_b", 0.0)),
                C=float(d.get("C", 1.0)),
                quad_mean=None if d.get("quad_mean") is None else np.asarray(d["quad_mean"], np.float64),
                quad_scale=None if d.get("quad_scale") is None else np.asarray(d["quad_scale"], np.float64),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid model coefficients ({exc})") from exc
        width = n_features * (2 if m.quadratic else 1)
        if not (m.mean.shape == m.scale.shape == m.coef.shape == (width,)):
            raise ModelError(f"{source}: coefficients do not match the {n_features} feature names")
        if m.quadratic and (
            m.quad_scale is None or m.quad_scale.shape != (n_features,) or np.any(m.quad_scale <= 0)
        ):
            raise ModelError(f"{source}: invalid quadratic standardisation")
        if not np.all(np.isfinite(m.coef)) or np.any(m.scale <= 0):
            raise ModelError(f"{source}: coefficients are not finite or a scale is not positive")
        return m


@dataclass
class Reference:
    """Where the training pods lie in feature space, for the gate's novelty test.

    ``novelty(x) = mean(((x - mean) / scale) ** 2)`` over the features; a pod is novel
    (unlike any training pod) above ``max_d2``.
    """

    mean: np.ndarray
    scale: np.ndarray
    max_d2: float

    @classmethod
    def fit(cls, X: np.ndarray, margin: float = 1.5, percentile: float = 99.0) -> Reference:
        """``max_d2`` = ``margin`` x the ``percentile`` of the training pods' own novelty."""
        X = np.asarray(X, np.float64)
        mean, scale = X.mean(axis=0), X.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        d2 = (((X - mean) / scale) ** 2).mean(axis=1)
        return cls(mean, scale, float(margin * np.percentile(d2, percentile)))

    def novelty(self, X: np.ndarray) -> np.ndarray:
        """``(N,)`` mean squared standardised distance of ``X`` ``(N, F)`` to the training pods."""
        return (((np.asarray(X, np.float64) - self.mean) / self.scale) ** 2).mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "max_d2": float(self.max_d2),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], n_features: int, source: str) -> Reference:
        try:
            r = cls(np.asarray(d["mean"], np.float64), np.asarray(d["scale"], np.float64), float(d["max_d2"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: invalid reference statistics ({exc})") from exc
        if r.mean.shape != (n_features,) or r.scale.shape != (n_features,) or np.any(r.scale <= 0):
            raise ModelError(f"{source}: reference statistics do not match the {n_features} features")
        return r


@dataclass
class PodGrade:
    """The grader's answer for one pod: the gate decision and, when it passed, the verdict."""

    gate: GateDecision
    okra_likeness: float | None
    tender_probability: float | None
    novelty: float | None = None

    @property
    def okra(self) -> bool:
        return self.gate.passed


@dataclass
class Grader:
    """Tender-vs-tough grader (and optional okra-likeness model for the gate).

    Attributes:
        tender: the calibrated tender model.
        okra: the okra-vs-look-alike model, or None.
        reference: the training pods' feature statistics for the novelty test, or None.
        gate: gate thresholds.
        min_okra_likeness: the gate's threshold on ``okra.predict_proba`` (when ``okra`` exists).
        threshold: probability at or above which a pod is called tender.
        feature_names: the features, in order (must equal :data:`FEATURE_NAMES` to grade photos).
        card: the rest of ``grader.json`` (name, metrics, provenance, note ...).
        cnn: the optional pod-crop CNN (``cnn.onnx`` in the folder); its probability is averaged in.
        okra_cnn: the optional okra-vs-look-alike CNN on the same crops (``okra_cnn.onnx``); its
            probability is averaged with ``okra``'s for the likeness test.
    """

    tender: LinearModel
    okra: LinearModel | None = None
    reference: Reference | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    min_okra_likeness: float = 0.5
    threshold: float = 0.5
    feature_names: tuple[str, ...] = FEATURE_NAMES
    card: dict[str, Any] = field(default_factory=dict)
    cnn: Any | None = None
    okra_cnn: Any | None = None

    # ---- inference on features
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated tender probability ``(N,)`` for features ``(N, F)``."""
        return self.tender.predict_proba(X)

    def predict_combined(self, X: np.ndarray, crops: np.ndarray | None = None) -> np.ndarray:
        """Tender probability ``(N,)`` from features and, with a CNN, its crops ``(N, 3, 32, 64)``
        (see :func:`okrainsight.grading.cnn.cnn_input`): the mean of both models."""
        p = self.predict_proba(X)
        if self.cnn is None:
            return p
        if crops is None:
            raise ModelError("this grader has a CNN: pass the pods' crops too")
        return 0.5 * (p + self.cnn.predict(crops))

    def okra_likeness(self, X: np.ndarray, crops: np.ndarray | None = None) -> np.ndarray | None:
        """Okra-vs-look-alike probability ``(N,)``, or None without that model. With an okra CNN
        and the pods' crops ``(N, 3, 32, 64)`` (:func:`okrainsight.grading.cnn.cnn_input`), the
        mean of the feature model's and the CNN's probabilities; without crops, the feature model's."""
        if self.okra is None:
            return None
        p = self.okra.predict_proba(X)
        if self.okra_cnn is not None and crops is not None:
            p = 0.5 * (p + self.okra_cnn.predict(crops))
        return p

    # ---- inference on photos
    def grade_pod(
        self,
        image: np.ndarray,
        pod_mask: np.ndarray,
        *,
        bbox: list[int] | None = None,
        probability: np.ndarray | None = None,
        length_px: float | None = None,
    ) -> PodGrade:
        """Gate and grade one pod.

        Args:
            image: ``(H, W, 3)`` uint8 RGB photo.
            pod_mask: the pod's mask, full-size ``(H, W)`` or, with ``bbox``, its crop.
            bbox: ``[x0, y0, x1, y1]`` of the crop.
            probability: okra probability over the same pixels as ``pod_mask`` (0..1), or None.
            length_px: the pod's length if known.
        """
        decision = gate_pod(
            pod_mask, image.shape, probability=probability, length_px=length_px, config=self.gate
        )
        if not decision.passed:
            return PodGrade(decision, None, None)
        x = pod_features(image, pod_mask, bbox=bbox, length_px=decision.stats["length_px"])[None]
        crop = None
        if self.cnn is not None or self.okra_cnn is not None:
            from okrainsight.grading.cnn import cnn_input

            m = np.asarray(pod_mask) > 0
            if bbox is None:
                ys, xs = np.nonzero(m)
                bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
                m = m[bbox[1] : bbox[3], bbox[0] : bbox[2]]
            crop = cnn_input(image, m, bbox)
        return self.grade_features(x[0], decision, crop)

    def grade_features(
        self, features: np.ndarray, decision: GateDecision, crop: np.ndarray | None = None
    ) -> PodGrade:
        """The appearance tests (colour, novelty, likeness) and the verdict for a pod that passed
        the shape gate (``decision``); ``crop`` is the CNN input when the grader has a CNN."""
        x = np.asarray(features, np.float64)[None]
        like = self.okra_likeness(x, None if crop is None else np.asarray(crop)[None])
        like_v = None if like is None else float(like[0])
        nov = None if self.reference is None else float(self.reference.novelty(x)[0])
        reason = None
        if not colour_plausible(x[0], self.gate):
            reason = "not okra-coloured"
        elif nov is not None and self.reference is not None and nov > self.reference.max_d2:
            reason = "unlike any training pod"
        elif like_v is not None and like_v < self.min_okra_likeness:
            reason = "not okra-like"
        if reason is not None:
            return PodGrade(
                GateDecision(False, reason, decision.okra_score, decision.stats), like_v, None, nov
            )
        crops = None if crop is None else np.asarray(crop)[None]
        return PodGrade(decision, like_v, float(self.predict_combined(x, crops)[0]), nov)

    def grade_pods(
        self, image: np.ndarray, pods: list[Any], probability: np.ndarray | None = None
    ) -> list[PodGrade]:
        """Grade :class:`okrainsight.runtime.Pod` objects of one photo (one answer each, same order)."""
        out = []
        for p in pods:
            x0, y0, x1, y1 = p.bbox
            prob = None if probability is None else np.asarray(probability)[y0:y1, x0:x1]
            out.append(self.grade_pod(image, p.crop, bbox=p.bbox, probability=prob, length_px=p.length_px))
        return out

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        d = dict(self.card)
        # the card names the okra CNN exactly when the grader holds one (load_grader needs its file)
        if self.okra_cnn is None:
            d.pop("okra_cnn", None)
        elif not d.get("okra_cnn"):
            d["okra_cnn"] = {"file": OKRA_CNN_ONNX}
        d.update(
            {
                "format": GRADER_FORMAT,
                "feature_names": list(self.feature_names),
                "threshold": float(self.threshold),
                "min_okra_likeness": float(self.min_okra_likeness),
                "gate": self.gate.to_dict(),
                "tender": self.tender.to_dict(),
                "okra": None if self.okra is None else self.okra.to_dict(),
                "reference": None if self.reference is None else self.reference.to_dict(),
            }
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "grader") -> Grader:
        if not isinstance(d, dict) or d.get("format") != GRADER_FORMAT:
            raise ModelError(f"{source}: not a grader card (expected format {GRADER_FORMAT!r})")
        names = tuple(str(n) for n in d.get("feature_names", []))
        if names != FEATURE_NAMES:
            raise ModelError(
                f"{source}: its features differ from this version's; retrain with 'okra grade train'"
            )
        tender = LinearModel.from_dict(d.get("tender") or {}, len(names), f"{source} (tender)")
        okra = None if not d.get("okra") else LinearModel.from_dict(d["okra"], len(names), f"{source} (okra)")
        ref = d.get("reference")
        reference = None if not ref else Reference.from_dict(ref, len(names), f"{source} (reference)")
        reserved = {
            "format",
            "feature_names",
            "threshold",
            "min_okra_likeness",
            "gate",
            "tender",
            "okra",
            "reference",
        }
        return cls(
            tender=tender,
            okra=okra,
            reference=reference,
            gate=GateConfig.from_dict(d.get("gate")),
            min_okra_likeness=float(d.get("min_okra_likeness", 0.5)),
            threshold=float(d.get("threshold", 0.5)),
            feature_names=names,
            card={k: v for k, v in d.items() if k not in reserved},
        )

    def save(self, directory: str | os.PathLike[str], *, onnx: bool = True) -> Path:
        """Write ``grader.json`` (and ``grader.onnx`` when the ``onnx`` package is installed), and
        the okra CNN's ``okra_cnn.onnx`` when the grader holds one loaded from elsewhere."""
        from okrainsight.imageio import atomic_write_bytes, atomic_write_text

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        if self.okra_cnn is not None:
            src = Path(getattr(self.okra_cnn, "path", ""))
            dst = out / OKRA_CNN_ONNX
            if not src.is_file():
                raise ModelError(f"{out}: the okra CNN's file {src} is missing; cannot save the grader")
            if src.resolve() != dst.resolve():
                atomic_write_bytes(dst, src.read_bytes())
        atomic_write_text(out / GRADER_FILE, json.dumps(self.to_dict(), indent=2) + "\n")
        if onnx:
            try:
                data = grader_onnx_bytes(self)
            except MissingDependencyError:
                log.warning("onnx is not installed: %s written without %s", out, GRADER_ONNX)
            else:
                atomic_write_bytes(out / GRADER_ONNX, data)
        return out


def apply_grader(
    grader: Grader, image: np.ndarray, pods: list[Any], probability: np.ndarray | None = None
) -> list[PodGrade]:
    """Gate and grade :class:`okrainsight.runtime.Pod` objects in place: each gets
    ``okra_plausible``, ``gate_reason`` and ``tender_probability`` (None when gated out).

    Args:
        grader: the grader.
        image: ``(H, W, 3)`` uint8 RGB photo.
        pods: the photo's pods (with ``crop`` and ``bbox``).
        probability: ``(H, W)`` okra probability (0..1) for the okra score, or None.
    """
    grades = grader.grade_pods(image, pods, probability)
    for pod, g in zip(pods, grades, strict=True):
        pod.okra_plausible = g.gate.passed
        pod.gate_reason = g.gate.reason
        pod.tender_probability = None if g.tender_probability is None else round(g.tender_probability, 4)
    return grades


def grader_dir(spec: str | os.PathLike[str]) -> Path:
    """The path a grader ``spec`` names: ``"default"`` (when no such file or folder exists here) is
    the built-in grader's folder, anything else the path itself."""
    if os.fspath(spec) == "default" and not Path(spec).exists():
        return BUILTIN_GRADER_DIR
    return Path(spec)


def load_grader(spec: str | os.PathLike[str]) -> Grader:
    """Load a grader folder, its ``grader.json``, or ``"default"`` (the built-in grader).

    Raises:
        ModelError: nothing usable there.
    """
    p = grader_dir(spec)
    if p == BUILTIN_GRADER_DIR and not (p / GRADER_FILE).is_file():
        raise ModelError(f"the built-in grader is not installed ({p / GRADER_FILE} is missing)")
    if p.is_dir():
        p = p / GRADER_FILE
    if not p.is_file():
        raise ModelError(f"{p}: no such grader (expected a folder holding {GRADER_FILE})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p}: cannot read the grader card ({exc})") from exc
    grader = Grader.from_dict(data, source=str(p))
    if data.get("cnn"):
        from okrainsight.grading.cnn import CNN_ONNX, CnnRunner

        if not (p.parent / CNN_ONNX).is_file():
            raise ModelError(f"{p.parent}: the card names a CNN but {CNN_ONNX} is missing")
        grader.cnn = CnnRunner(p.parent / CNN_ONNX)
    if data.get("okra_cnn"):
        from okrainsight.grading.cnn import CnnRunner

        if (p.parent / OKRA_CNN_ONNX).is_file():
            grader.okra_cnn = CnnRunner(p.parent / OKRA_CNN_ONNX)
        else:  # e.g. a folder exported for phones: the likeness test falls back to the features
            log.warning(
                "%s: the card names an okra CNN but %s is missing; okra likeness from features alone",
                p.parent,
                OKRA_CNN_ONNX,
            )
    return grader


def resolve_grader(spec: str | os.PathLike[str] | Grader | None) -> Grader | None:
    """``spec`` as a grader: None stays None, ``"default"`` is the built-in grader (None when it is
    not installed), a :class:`Grader` is returned as is, anything else is loaded from its folder."""
    if spec is None or isinstance(spec, Grader):
        return spec
    if grader_dir(spec) == BUILTIN_GRADER_DIR:
        return default_grader()
    return load_grader(spec)


def default_grader() -> Grader | None:
    """The built-in grader, or None when it is not installed."""
    if not (BUILTIN_GRADER_DIR / GRADER_FILE).is_file():
        return None
    return load_grader(BUILTIN_GRADER_DIR)


# ----------------------------------------------------------------------------------
# ONNX export: features -> (tender_probability, okra_likeness)
# ----------------------------------------------------------------------------------


def grader_onnx_bytes(grader: Grader, *, opset: int = 17) -> bytes:
    """The grader as a serialised ONNX model (input ``features`` float32 ``(N, F)``).

    Outputs ``tender_probability``, ``okra_likeness`` and ``novelty`` float32 ``(N, 1)``; without
    an okra model ``okra_likeness`` is all ones, without reference statistics ``novelty`` is all
    zeros. Built with ``onnx.helper`` (Sub, Div, Mul, MatMul, Add, Sigmoid, ReduceMean); the
    feature names and gate thresholds are stored in the metadata key ``grader_card``.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise MissingDependencyError("onnx", "export") from exc

    F = len(grader.feature_names)
    nodes, inits = [], []

    def branch(prefix: str, m: LinearModel | None, out: str) -> None:
        if m is None:
            inits.append(numpy_helper.from_array(np.zeros((F, 1), np.float32), f"{prefix}_zero"))
            inits.append(numpy_helper.from_array(np.ones((1,), np.float32), f"{prefix}_one"))
            nodes.append(helper.make_node("MatMul", ["features", f"{prefix}_zero"], [f"{prefix}_z"]))
            nodes.append(helper.make_node("Add", [f"{prefix}_z", f"{prefix}_one"], [out]))
            return
        # fold standardisation and calibration: A * (w . (f - mu) / s + b) + B = f . w' + b'
        w = m.calib_a * m.coef / m.scale
        b = m.calib_a * (m.intercept - float(np.sum(m.coef * m.mean / m.scale))) + m.calib_b
        inp = "features"
        if m.quad_mean is not None and m.quad_scale is not None:
            inits.append(
                numpy_helper.from_array(m.quad_mean.reshape(1, F).astype(np.float32), f"{prefix}_qm")
            )
            inits.append(
                numpy_helper.from_array((1.0 / m.quad_scale).reshape(1, F).astype(np.float32), f"{prefix}_qs")
            )
            nodes.append(helper.make_node("Sub", ["features", f"{prefix}_qm"], [f"{prefix}_qd"]))
            nodes.append(helper.make_node("Mul", [f"{prefix}_qd", f"{prefix}_qs"], [f"{prefix}_q1"]))
            nodes.append(helper.make_node("Mul", [f"{prefix}_q1", f"{prefix}_q1"], [f"{prefix}_q2"]))
            nodes.append(
                helper.make_node("Concat", [f"{prefix}_q1", f"{prefix}_q2"], [f"{prefix}_f"], axis=1)
            )
            inp = f"{prefix}_f"
        inits.append(numpy_helper.from_array(w.reshape(-1, 1).astype(np.float32), f"{prefix}_w"))
        inits.append(numpy_helper.from_array(np.array([b], np.float32), f"{prefix}_b"))
        nodes.append(helper.make_node("MatMul", [inp, f"{prefix}_w"], [f"{prefix}_z"]))
        nodes.append(helper.make_node("Add", [f"{prefix}_z", f"{prefix}_b"], [f"{prefix}_logit"]))
        nodes.append(helper.make_node("Sigmoid", [f"{prefix}_logit"], [out]))

    branch("tender", grader.tender, "tender_probability")
    branch("okra", grader.okra, "okra_likeness")
    ref = grader.reference
    mu = np.zeros(F) if ref is None else ref.mean
    inv = np.zeros(F) if ref is None else 1.0 / ref.scale
    inits.append(numpy_helper.from_array(mu.reshape(1, F).astype(np.float32), "ref_mean"))
    inits.append(numpy_helper.from_array(inv.reshape(1, F).astype(np.float32), "ref_inv_scale"))
    nodes.append(helper.make_node("Sub", ["features", "ref_mean"], ["ref_d"]))
    nodes.append(helper.make_node("Mul", ["ref_d", "ref_inv_scale"], ["ref_z"]))
    nodes.append(helper.make_node("Mul", ["ref_z", "ref_z"], ["ref_z2"]))
    nodes.append(helper.make_node("ReduceMean", ["ref_z2"], ["novelty"], axes=[1], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "okra_grader",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", F])],
        [
            helper.make_tensor_value_info("tender_probability", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("okra_likeness", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("novelty", TensorProto.FLOAT, ["N", 1]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="okrainsight"
    )
    model.ir_version = min(model.ir_version, 9)
    meta = model.metadata_props.add()
    card = {
        "feature_names": list(grader.feature_names),
        "threshold": grader.threshold,
        "min_okra_likeness": grader.min_okra_likeness,
        "max_d2": None if ref is None else ref.max_d2,
        "gate": grader.gate.to_dict(),
    }
    meta.key, meta.value = "grader_card", json.dumps(card)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_grader_predict(
    path: str | os.PathLike[str], X: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run an exported grader in ONNX Runtime.

    Returns:
        ``(tender_probability, okra_likeness, novelty)``, each ``(N,)`` float32.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    t, o, n = sess.run(
        ["tender_probability", "okra_likeness", "novelty"], {"features": np.asarray(X, np.float32)}
    )
    return np.asarray(t).reshape(-1), np.asarray(o).reshape(-1), np.asarray(n).reshape(-1)


# ----------------------------------------------------------------------------------
# Fitting (scikit-learn)
# ----------------------------------------------------------------------------------

#: Inverse regularisation strengths tried by cross-validation.
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass
class FitReport:
    """What :func:`fit_linear` found: the chosen form and C, grouped-CV AUC per candidate
    (keys like ``"linear C=0.1"``), the chosen candidate's AUC and calibrated out-of-fold probabilities."""

    C: float
    quadratic: bool
    folds: int
    cv_auc: dict[str, float]
    best_auc: float
    oof_probability: np.ndarray


def grouped_folds(
    y: np.ndarray, groups: np.ndarray, folds: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds that keep each group on one side: ``[(train_idx, test_idx), ...]``.

    The number of folds is lowered to what the groups of the rarer class allow (at least 2).

    Raises:
        ConfigError: fewer than two groups of either class.
    """
    from okrainsight.errors import ConfigError

    try:
        from sklearn.model_selection import StratifiedGroupKFold
    except ImportError as exc:
        raise MissingDependencyError("scikit-learn", "train") from exc
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    per_class = [len(set(groups[y == c])) for c in (0, 1)]
    if min(per_class) < 2:
        raise ConfigError(
            f"grouped cross-validation needs at least 2 okra of each class; found {per_class[1]} "
            f"positive and {per_class[0]} negative group(s)"
        )
    k = max(2, min(int(folds), *per_class))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(len(y)), y, groups)]


def _std(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean, np.where(scale > 1e-9, scale, 1.0)


def _fit_raw(X: np.ndarray, y: np.ndarray, C: float, quadratic: bool = False) -> LinearModel:
    from sklearn.linear_model import LogisticRegression

    qm = qs = None
    if quadratic:
        qm, qs = _std(X)
    shell = LinearModel(np.zeros(0), np.zeros(0), np.zeros(0), 0.0, quad_mean=qm, quad_scale=qs)
    Xe = shell.expand(X)
    mean, scale = _std(Xe)
    lr = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
    lr.fit((Xe - mean) / scale, y)
    coef = lr.coef_[0].astype(np.float64)
    return LinearModel(mean, scale, coef, float(lr.intercept_[0]), C=C, quad_mean=qm, quad_scale=qs)


def fit_linear(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int = 5,
    Cs: tuple[float, ...] = C_GRID,
    forms: tuple[bool, ...] = (False, True),
    seed: int = 0,
) -> tuple[LinearModel, FitReport]:
    """Fit a calibrated logistic model; form (linear or quadratic) and C chosen by grouped
    cross-validation (ROC-AUC; ties go to the simpler, earlier candidate).

    Args:
        X: ``(N, F)`` features. y: ``(N,)`` 0/1 labels. groups: ``(N,)`` group keys (the okra).
        folds: folds of :func:`grouped_folds`.
        Cs: candidate inverse regularisation strengths.
        forms: candidate forms, ``False`` linear, ``True`` quadratic.

    Returns:
        The model fitted on all rows, Platt-calibrated on the out-of-fold scores of the chosen C,
        and the :class:`FitReport` (its ``oof_probability`` are calibrated out-of-fold probabilities).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    X = np.asarray(X, np.float64)
    y = np.asarray(y).astype(int)
    splits = grouped_folds(y, groups, folds, seed)
    if not Cs or not forms:
        raise ValueError("fit_linear needs at least one C and one form")
    best: tuple[float, float, bool, np.ndarray] | None = None
    aucs: dict[str, float] = {}
    for quad in forms:
        for C in Cs:
            oof = np.zeros(len(y))
            for tr, te in splits:
                oof[te] = _fit_raw(X[tr], y[tr], C, quad).score(X[te])
            auc = float(roc_auc_score(y, oof))
            aucs[f"{'quadratic' if quad else 'linear'} C={C:g}"] = auc
            if best is None or auc > best[0] + 1e-9:
                best = (auc, float(C), bool(quad), oof)
    assert best is not None  # guarded above
    auc, C, quad, oof = best
    platt = LogisticRegression(C=1e4, max_iter=2000).fit(oof[:, None], y)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    model = _fit_raw(X, y, C, quad)
    model.calib_a, model.calib_b = a, b
    oof_p = _sigmoid(a * oof + b)
    return model, FitReport(
        C=C, quadratic=quad, folds=len(splits), cv_auc=aucs, best_auc=auc, oof_probability=oof_p
    )


__all__ = [
    "BUILTIN_GRADER_DIR",
    "apply_grader",
    "C_GRID",
    "GRADER_FILE",
    "GRADER_ONNX",
    "FitReport",
    "Grader",
    "LinearModel",
    "OKRA_CNN_ONNX",
    "OKRA_CNN_WEIGHTS",
    "PodGrade",
    "Reference",
    "default_grader",
    "grader_dir",
    "fit_linear",
    "grader_onnx_bytes",
    "grouped_folds",
    "load_grader",
    "onnx_grader_predict",
    "resolve_grader",
]
