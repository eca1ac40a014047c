#!/bin/bash
# One prepared GPU round (docs/training.md, "On a lent GPU"), sized for a 10-minute call:
#   1. environment; 2. N renders on every core (at most 2 RENDER_S seconds) (tools/prepare_default_data.py, real pods
#   from PODS and real negatives from NEGS when given); 3. a DDP + bf16 smoke run that also measures the
#   training throughput with the batches augmented on the GPU (--augment-on device); 4. two students trained
#   from scratch side by side on the same renders, epochs fitted to the time left: the small student
#   (okra_lraspp_small, width 0.5: v0.8's) and a wider one (WIDE_KWARGS, width 0.75: v0.9's), to tell capacity from
#   training time.
#   RUNS=A trains width 0.5 alone (RUNS=B width 0.75 alone), with all cores but one as loader workers (the loaders limit the rate).
#   BACKGROUND (default 0) sets augment.background for both: the chance that a training image with okra gets green
#   surroundings (okrainsight.background_swap; 0.3 is what v0.7's fine-tunes and every step of v0.8 used, docs/model-card.md).
# Usage on the GPU machine, from the repository root:
#   OUT=out NEGS=folder-of-real-negatives PODS=labelled-real-pods bash tools/gpu_round.sh
# Dry run on a CPU:  PY=.venv/bin/python ACCEL=cpu BUDGET=150 RENDER_S=10 OUT=/tmp/gr bash tools/gpu_round.sh
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
PY=${PY:-python3}; OUT=${OUT:-/tmp/out}; BUDGET=${BUDGET:-540}; RENDER_S=${RENDER_S:-110}; ACCEL=${ACCEL:-gpu}
WIDE_KWARGS=${WIDE_KWARGS:-"{width: 0.75}"}; BATCH=${BATCH:-128}; LR=${LR:-0.003}; BACKGROUND=${BACKGROUND:-0}
SMOKE_BATCHES=${SMOKE_BATCHES:-60}
# the rate is read between logged steps, and the smoke run logs every step: at least 3 batches, so that two
# steps after the first are timed (on 2026-11-27, 30 batches logged at every 20th step gave one event; the fallback
# then counted the run's start-up as training time and planned 4 epochs instead of about 50)
[ "$SMOKE_BATCHES" -ge 3 ] || { echo "SMOKE_BATCHES must be at least 3"; exit 2; }
W=${WORK:-/tmp/okw}; rm -rf "$W"; mkdir -p "$W" "$OUT"
exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
RUNS=${RUNS:-A B}; NRUNS=$(echo $RUNS | wc -w)
CPUS=$($PY -c "import os; print(os.cpu_count())"); PER=$(( CPUS / NRUNS - 1 )); [ $PER -lt 1 ] && PER=1

el env; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
$PY -c "import sys,torch,lightning,torchvision;print('python',sys.version.split()[0],'torch',torch.__version__,'cuda',torch.cuda.is_available(),'lightning',lightning.__version__,'tv',torchvision.__version__,'cpus',$CPUS)"

el render
DATA=(--out $W/data --seed 7 --size 384x288)
[ -n "${NEGS:-}" ] && DATA+=(--negatives "$NEGS")
[ -n "${PODS:-}" ] && DATA+=(--pods "$PODS" --pod-fraction "${POD_FRACTION:-0.2}")
# renderer v9 on 16 cores: about 80-110 images per second once its workers have started
N=${N:-9000}; el "rendering $N (at most $(( RENDER_S * 2 )) s)"
timeout $(( RENDER_S * 2 )) $PY tools/prepare_default_data.py "${DATA[@]}" --n $N > $W/render.log 2>&1; tail -c 300 $W/render.log
for f in $W/data/images/*.jpg; do s=$(basename ${f%.jpg}); [ -f $W/data/masks/$s.png ] || rm -f $f; done  # cut short: whole pairs only
ls $W/data/images | wc -l; cp $W/data/recipe.json $OUT/recipe.json

el smoke-ddp-bf16
common=(--accelerator $ACCEL --batch-size $BATCH --lr $LR --workers $PER)
$PY - <<PY  # the GPU recipe (run A), cut to a few batches (smoke) and widened (run B); BACKGROUND in all three
import yaml
c = yaml.safe_load(open("configs/default-gpu.yaml"))
c["augment"] = {**c["augment"], "background": float("$BACKGROUND")}
yaml.safe_dump(c, open("$W/a.yaml", "w"))
yaml.safe_dump({**c, "limit_train_batches": $SMOKE_BATCHES, "limit_val_batches": 4, "log_every_n_steps": 1},
               open("$W/smoke.yaml", "w"))
yaml.safe_dump({**c, "arch_kwargs": yaml.safe_load("$WIDE_KWARGS")}, open("$W/wide.yaml", "w"))
PY
s=$(date +%s)
timeout 240 $PY -m okrainsight train $W/data --out $W/smoke "${common[@]}" --config $W/smoke.yaml --epochs 1 --devices 1 --strategy ddp --precision ${PREC:-bf16-mixed} 2>&1 | grep -vi "warn" | tail -4
took=$(( $(date +%s) - s ))
[ -s $W/smoke/card.json ] || { el "the smoke run wrote no card: stopping (see above)"; exit 1; }
$PY - <<PY
import json; c = json.load(open("$W/smoke/card.json")); t = c["extra"]["training"]
print("SMOKE card:", {k: t[k] for k in ("accelerator", "devices", "strategy", "precision", "augment_on")}, "metrics", c["metrics"])
PY
ntrain=$($PY -c "import json;print(json.load(open('$W/smoke/card.json'))['extra']['split_sizes']['train'])")
left=$(( BUDGET - ($(date +%s) - t0) - 45 )); [ $left -lt 60 ] && left=60
# steady-state rate from the TensorBoard step times of the smoke run (its own loader of PER workers); two runs share the GPU
EPOCHS=$($PY - <<PY
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ev = []
try:
    for d in glob.glob("$W/smoke/logs/tb/version_*"):
        acc = EventAccumulator(d); acc.Reload(); ev += acc.Scalars("train_loss_step")
except Exception as exc:
    print("no step times:", exc, file=sys.stderr)
ev = ev[1:]  # the first logged step waits for the loaders to start
rate = (ev[-1].step - ev[0].step) * $BATCH / (ev[-1].wall_time - ev[0].wall_time) if len(ev) > 1 else $SMOKE_BATCHES * $BATCH / max(1, $took)
print(f"rate {rate:.0f} images/s", file=open("$W/rate.txt", "w"))
print(max(2, int(0.9 * rate / (1.5 if $NRUNS > 1 else 1.0) * ($left - 30) / $ntrain)))
PY
); cat $W/rate.txt
MIN=$($PY -c "print(round(max(0.5, ($left - 25) / 60), 2))")
el "smoke took ${took}s; $ntrain training images; $EPOCHS epochs per run, capped at $MIN min"

el train-AB
pids=()
for r in $RUNS; do
  cfg=$W/a.yaml; [ $r = B ] && cfg=$W/wide.yaml
  ( timeout $(( left + 15 )) $PY -m okrainsight train $W/data --out $W/$r "${common[@]}" --config $cfg --epochs $EPOCHS --max-minutes $MIN > $W/$r.log 2>&1; echo "$r rc=$?" ) & pids+=($!)
done
sleep 60; el mid; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
wait "${pids[@]}"
el done-train
for r in $RUNS; do
  grep -vi "warn" $W/$r.log | tail -n 3
  mkdir -p $OUT/$r; cp $W/$r/card.json $W/$r/model.safetensors $W/$r/metrics.csv $OUT/$r/ 2>/dev/null
done
el end
