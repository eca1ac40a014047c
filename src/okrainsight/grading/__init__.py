"""The tip-break verdict: tender or tough for each segmented pod, behind an okra / not-okra gate.

* :mod:`~okrainsight.grading.features`: per-pod shape, CIELAB colour and texture features (numpy/OpenCV);
* :mod:`~okrainsight.grading.gate`: the plausibility gate (area, shape, okra score);
* :mod:`~okrainsight.grading.model`: the calibrated grader, JSON + ONNX, torch- and sklearn-free inference;
* :mod:`~okrainsight.grading.data`: labels (``labels.csv``, class folders, file names) and grouping by okra;
* :mod:`~okrainsight.grading.jobs`: ``okra grade train`` / ``eval`` and the default grader;
* :mod:`~okrainsight.grading.cnn`: the optional small CNN on masked pod crops (torch).

See ``docs/grading.md``.
"""

from okrainsight.grading.features import FEATURE_NAMES, pod_features
from okrainsight.grading.gate import GateConfig, GateDecision, gate_pod
from okrainsight.grading.model import Grader, PodGrade, default_grader, load_grader

__all__ = [
    "FEATURE_NAMES",
    "GateConfig",
    "GateDecision",
    "Grader",
    "PodGrade",
    "default_grader",
    "gate_pod",
    "load_grader",
    "pod_features",
]
