"""The okra / not-okra gate on renders (and, optionally, real non-okra photos).

Usage:  python bench/bench_gate.py [--n 100] [--per-kind 20] [--size 256x192] [--seed 50000]
        [--grader default] [--model default] [--segmenter-scenes 0] [--real-negatives DIR] [--real-okra DIR]

* okra scenes (kinds white, bunch, cloth, wood, plate, pile, plant, taken in turn): every pod's
  ground-truth instance mask (its largest piece after ``find_pods``' cleanup, as a segmenter
  would hand it over) goes through the gate (``Grader.grade_pod``); reported: the share
  of accepted pods among *visible pods of reasonable size* (visible fraction at least 0.8 and
  area at least 0.5% of the photo), per kind and overall, and among all pods;
* distractor-only scenes (``render_scene(..., kind="negative")``): the distractor mask's
  components (``find_pods``, as a segmenter that wrongly segmented every distractor would give
  them) go through the gate; reported: the share of components rejected and of scenes with no
  component passing (``okra_found`` false);
* single-kind look-alike scenes (``okrainsight.synth.scenes.render_lookalike_scene``) for each
  kind of look-alike: the share of scenes rejected per kind;
* with ``--segmenter-scenes N``: N distractor-only renders through the segmentation model
  ``--model`` and the grader (the okra-score test included), as ``okra segment`` runs them;
* with ``--real-negatives DIR`` / ``--real-okra DIR`` (defaults ``../shared/data/real-negatives``
  and ``../shared/data/real-okra/images`` beside the repository when they exist; the photos are
  read in place, never copied): each photo through ``--model`` and the grader; reported: how
  many photos have a pod that passes the gate (``okra_found``).

Seeds differ from the built-in grader's training seeds (0.. and 1_000_000..). Prints a table;
the figures go in docs/grading.md ("Gate: measured rejection") and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from okrainsight.grading.gate import okra_found
from okrainsight.grading.jobs import LOOKALIKE_KINDS, OKRA_KINDS
from okrainsight.grading.model import load_grader
from okrainsight.imageio import iter_image_files, read_image
from okrainsight.runtime import Segmenter, find_pods
from okrainsight.synth import render_scene
from okrainsight.synth.scenes import render_lookalike_scene

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
REAL_NEGATIVES = SHARED / "real-negatives"
REAL_OKRA = SHARED / "real-okra" / "images"


def _pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:5.1f}% ({k}/{n})" if n else "  n/a"


def bench_okra(grader, n: int, seed: int, size: tuple[int, int]) -> dict:
    """Gate every ground-truth pod mask of ``n`` okra scenes."""
    acc = defaultdict(lambda: [0, 0])  # kind -> [accepted, total] over reasonable pods
    acc_all = [0, 0]
    reasons: Counter[str] = Counter()
    area_min = 0.005 * size[0] * size[1]
    for i in range(n):
        kind = OKRA_KINDS[i % len(OKRA_KINDS)]
        sc = render_scene(seed + i, size, kind=kind)
        for pod in sc.pods:
            # the ground-truth mask as a segmenter's pod: its largest piece after find_pods' cleanup
            pieces = find_pods(sc.instances == pod["id"])
            if not pieces:
                continue
            p = pieces[0]
            g = grader.grade_pod(sc.image, p.crop, bbox=p.bbox, length_px=p.length_px)
            acc_all[0] += g.gate.passed
            acc_all[1] += 1
            if pod["visible_fraction"] >= 0.8 and pod["area_px"] >= area_min:
                acc[kind][0] += g.gate.passed
                acc[kind][1] += 1
                if not g.gate.passed:
                    reasons[g.gate.reason] += 1
    return {"by_kind": dict(acc), "all": acc_all, "reasons": reasons}


class _SceneTally:
    """Distractor-only scenes through the gate: every component of the distractor mask is graded."""

    def __init__(self) -> None:
        self.scenes = self.rejected = self.components = self.components_rejected = 0
        self.reasons: Counter[str] = Counter()

    def add(self, grader, image, mask) -> None:
        pods = find_pods(mask)
        if not pods:
            return
        grades = grader.grade_pods(image, pods)
        self.scenes += 1
        self.rejected += not okra_found(grades)
        self.components += len(grades)
        self.components_rejected += sum(not g.gate.passed for g in grades)
        self.reasons.update(g.gate.reason for g in grades)


def bench_negative(grader, n: int, seed: int, size: tuple[int, int]) -> _SceneTally:
    """Gate every distractor component of ``n`` distractor-only scenes."""
    tally = _SceneTally()
    for i in range(n):
        sc = render_scene(seed + i, size, kind="negative")
        tally.add(grader, sc.image, sc.distractor_mask)
    return tally


def bench_kinds(grader, per_kind: int, seed: int, size: tuple[int, int]) -> dict[str, _SceneTally]:
    """Single-kind look-alike scenes through the gate, per kind."""
    out = {}
    for name in LOOKALIKE_KINDS:
        out[name] = tally = _SceneTally()
        for k in range(per_kind):
            tally.add(grader, *render_lookalike_scene(seed + k, size, name))
    return out


def bench_segmenter(grader, n: int, seed: int, size: tuple[int, int], seg: Segmenter) -> tuple[int, int]:
    """Distractor-only renders through the segmentation model and the grader (okra score included):
    ``(scenes with no pod passing, scenes)``."""
    rejected = 0
    for i in range(n):
        sc = render_scene(seed + i, size, kind="negative")
        res = seg.segment(sc.image)
        rejected += not okra_found(grader.grade_pods(sc.image, res.pods, res.probability))
    return rejected, n


def bench_real(grader, folder: Path, seg: Segmenter) -> list[tuple[str, bool, int, list[str]]]:
    """Each photo through the segmentation model and the grader: (name, okra_found, pods, reasons)."""
    rows = []
    for p in iter_image_files([folder], recursive=False):
        image = read_image(p)
        res = seg.segment(image)
        grades = grader.grade_pods(image, res.pods, res.probability)
        rows.append((p.name, okra_found(grades), len(res.pods), [g.gate.reason for g in grades]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="okra scenes and distractor-only scenes each")
    ap.add_argument("--per-kind", type=int, default=20, help="single-kind look-alike scenes per kind")
    ap.add_argument("--size", default="256x192")
    ap.add_argument("--seed", type=int, default=50_000)
    ap.add_argument("--grader", default="default")
    ap.add_argument("--model", default="default", help="segmentation model for the real photos")
    ap.add_argument("--real-negatives", default=str(REAL_NEGATIVES) if REAL_NEGATIVES.is_dir() else "")
    ap.add_argument("--real-okra", default=str(REAL_OKRA) if REAL_OKRA.is_dir() else "")
    ap.add_argument(
        "--segmenter-scenes", type=int, default=0, help="distractor-only renders through --model too"
    )
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    size = (w, h)
    grader = load_grader(args.grader)
    t0 = time.perf_counter()
    print(f"gate benchmark: grader {args.grader}, {w}x{h}, seeds from {args.seed}")

    ok = bench_okra(grader, args.n, args.seed, size)
    tot = [sum(v[0] for v in ok["by_kind"].values()), sum(v[1] for v in ok["by_kind"].values())]
    print(f"true pods accepted (visible >= 0.8, area >= 0.5%): {_pct(*tot)}")
    for kind in OKRA_KINDS:
        if kind in ok["by_kind"]:
            print(f"  {kind:6s} {_pct(*ok['by_kind'][kind])}")
    print(f"  all pods, any visibility or size: {_pct(*ok['all'])}")
    print(f"  reasons for rejecting reasonable pods: {dict(ok['reasons'].most_common())}")

    neg = bench_negative(grader, args.n, args.seed + 100_000, size)
    print(f"distractor-only scenes rejected (no component passes): {_pct(neg.rejected, neg.scenes)}")
    print(f"distractor components rejected: {_pct(neg.components_rejected, neg.components)}")
    print(f"  gate answers: {dict(neg.reasons.most_common())}")

    if args.per_kind:
        kinds = bench_kinds(grader, args.per_kind, args.seed + 200_000, size)
        print("single-kind look-alike scenes rejected (components rejected):")
        for name, t in kinds.items():
            comps = _pct(t.components_rejected, t.components)
            print(f"  {name:11s} {_pct(t.rejected, t.scenes)}   components {comps}")

    seg = (
        Segmenter.from_path(args.model)
        if args.segmenter_scenes or args.real_negatives or args.real_okra
        else None
    )
    if args.segmenter_scenes:
        r, s = bench_segmenter(grader, args.segmenter_scenes, args.seed + 100_000, size, seg)
        print(f"distractor-only scenes rejected end to end ({args.model} model + grader): {_pct(r, s)}")

    for label, spec in (("real non-okra", args.real_negatives), ("real okra", args.real_okra)):
        if not spec:
            continue
        folder = Path(spec)
        if not folder.is_dir():
            sys.exit(f"{folder}: no such folder")
        rows = bench_real(grader, folder, seg)
        found = sum(r[1] for r in rows)
        print(f"{label} photos with okra_found=True ({args.model} model + grader): {found}/{len(rows)}")
        for name, f, npods, reasons in rows:
            print(f"  {name:30s} okra_found={f!s:5s} pods={npods:2d} {Counter(reasons).most_common(3)}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
