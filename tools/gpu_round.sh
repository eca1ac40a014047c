#!/bin/bash
# One prepared GPU round (docs/training.md, "On a lent GPU"): environment, AMP + DDP smoke test, then two
# default-model candidates trained side by side (configs/default-gpu.yaml: one from v0.3, one from scratch at --lr 0.004 --epochs 18).
# Usage on the GPU machine, from the repository root: OUT=out NEGS=folder-of-real-negatives bash tools/gpu_round.sh
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
OUT=${OUT:-/tmp/out}; mkdir -p $OUT/A $OUT/B
N=${N:-12000}; SMOKE_BATCHES=${SMOKE_BATCHES:-10}; MINUTES=${MINUTES:-5}
W=/tmp/okw; mkdir -p $W
LOG=$OUT/log.txt
exec > >(tee -a $LOG) 2>&1
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
el env; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch,lightning,torchmetrics,torchvision,cv2,numpy;print('torch',torch.__version__,'cuda',torch.cuda.is_available(),'bf16',torch.cuda.is_bf16_supported() if torch.cuda.is_available() else None,'lightning',lightning.__version__,'tm',torchmetrics.__version__,'tv',torchvision.__version__,'np',numpy.__version__)"
python3 -c "import os;print('cpus',os.cpu_count())"
el render
timeout 300 python3 tools/prepare_default_data.py --out $W/data --n $N --seed 5 --size 384x288 --negatives ${NEGS:-../shared/data/real-negatives} 2>&1 | grep -v "^\s*$" | tail -5
ls $W/data/images | wc -l
cp $W/data/recipe.json $OUT/recipe.json 2>/dev/null
el smoke-ddp-amp
cat > $W/smoke.yaml <<YAML
arch: okra_lraspp_small
epochs: 2
batch_size: 16
limit_train_batches: $SMOKE_BATCHES
limit_val_batches: 3
workers: 4
progress: false
YAML
timeout 180 python3 -m okrainsight train $W/data --out $W/smoke --config $W/smoke.yaml --accelerator ${ACCEL:-gpu} --devices 1 --strategy ddp --precision ${PREC:-16-mixed} 2>&1 | grep -vi "warn\|^\s*$" | tail -12
python3 - <<PY
import json; c=json.load(open("$W/smoke/card.json")); t=c["extra"]["training"]
print("SMOKE card:", {k:t[k] for k in ("accelerator","devices","strategy","precision")}, "metrics", c["metrics"])
PY
el train-AB
rem=$(( ${BUDGET:-540} - ($(date +%s) - t0) - 50 )); MINUTES=$(python3 -c "print(round(max(0.5, min(${MINUTES}, $rem / 60 - 0.6)), 2))"); TL=$(( rem + 20 )); el "minutes per run $MINUTES, kill after $TL s"
( timeout $TL python3 -m okrainsight train $W/data --out $W/A --config configs/default-gpu.yaml --init-from src/okrainsight/models/default --max-minutes $MINUTES --accelerator ${ACCEL:-gpu} > $W/A.log 2>&1; echo "A rc=$?" ) & pa=$!
( timeout $TL python3 -m okrainsight train $W/data --out $W/B --config configs/default-gpu.yaml --lr 0.004 --epochs 18 --max-minutes $MINUTES --accelerator ${ACCEL:-gpu} > $W/B.log 2>&1; echo "B rc=$?" ) & pb=$!
sleep ${MID:-90}; el mid; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; uptime
wait $pa $pb
el done-train
for r in A B; do
  grep -vi "warn" $W/$r.log | tail -n 4
  cp $W/$r/card.json $W/$r/model.safetensors $W/$r/metrics.csv $OUT/$r/ 2>/dev/null
done
el end
