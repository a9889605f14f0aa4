#!/usr/bin/env bash
# One lent-GPU session (see ../shared/device/README.md): the benchmarks that need a GPU, from wheels and a
# slice cache carried in .device/ (git-ignored):
#   pip download (python 3.12 manylinux wheels) monai==1.6.1 pytorch-ignite==0.5.5 lightly -d .device/whl
#   .venv/bin/cardioseg data cache ../shared/data/acdc_ssl4mis --out .device/acdc256.xz --size 256
# then on the device, with carry [".device"]:  STEPS="throughput tta" bash benchmarks/gpu_session.sh
# One device command may run 600 s: choose STEPS to fit (estimates on an H200, from earlier runs):
#   throughput  fine-tuning train step: plain MONAI, the fast path and its levers, VARIANTS (up to 300 s
#               with two compiled variants; the JSON is rewritten after each; issue 10, target 1)
#   tta         time to 0.90 val Dice from the command's start, one process per TTA_VARIANTS entry
#               (about 150 s each; issue 10, targets 2 and 3)
#   accuracy    one long run, ACC_VARIANTS (default ema-ds: weight average and deep supervision) for
#               ACC_EPOCHS (default 120, about 250 s): the best Dice within 5 minutes (issue 10, target 3)
#   pretrain    BYOL ResNet-50 224 px pretraining images/s, view loader vs lightly's pipeline (issue 8)
#   packed      4 few-label runs at once vs one after another (issue 10, target 4)
#   ssl         specialist MIM and BYOL pretraining (SSL_EPOCHS, default 50, at 256 px) on the cache's train
#               patients, then the linear probe of their checkpoints after SSL_CHECKPOINTS epochs and at the
#               end against a random encoder, SSL_SEEDS (issue 8's evidence; not yet timed on a GPU: give it
#               a call of its own)
# Dry run on the CPU at tiny size: PY=.venv/bin/python CACHE=tiny.xz ENCODER=resnet18 EPOCHS=1 STEPS=... SMALL=1
set -uo pipefail
PY=${PY:-python3}
if [ "$PY" = python3 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export PYTHONUNBUFFERED=1 CI=true
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
CACHE=${CACHE:-.device/acdc256.xz}
ENCODER=${ENCODER:-resnet50}
SMALL=${SMALL:-0}  # 1: tiny sizes for a CPU dry run
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)"
log() { grep -v Warning | tee "$OUT/$1.log"; }
time_to_accuracy() {  # STEP TIMEOUT EPOCHS VARIANTS RESULT_NAME: one benchmarks.time_to_accuracy run
  if [ "$SMALL" = 1 ]; then size=(--image-size 64 --epochs 1 --batch-size 4)
  else size=(--epochs "$3" --batch-size 32); fi
  timeout "$2" $PY -m benchmarks.time_to_accuracy --dataset-dir "$CACHE" --dataset-format cache \
    --encoder "$ENCODER" "${size[@]}" --learning-rate 0.002 --variants "$4" --name "$5" \
    --output-dir "$OUT/$1_runs" --out-dir "$OUT" 2>&1 | log "$5"
}
for step in ${STEPS:-throughput tta}; do
  case $step in
  throughput)
    if [ "$SMALL" = 1 ]; then size=(--image-size 64 --batch-size 4 --steps 2 --warmup 1 --workers 0)
    else size=(--batch-size "${BATCH:-64}" --steps "${TRAIN_STEPS:-30}" --workers "${WORKERS:-14}"); fi
    timeout "${THROUGHPUT_TIMEOUT:-300}" $PY -m benchmarks.train_throughput --dataset-dir "$CACHE" --dataset-format cache \
      --encoder "$ENCODER" "${size[@]}" --variants "${VARIANTS:-monai,fast,fast-fused,fast-ema,fast-fused-compile,fast-fused-graphs}" \
      --out-dir "$OUT" 2>&1 | log throughput ;;
  tta) time_to_accuracy tta "${TTA_TIMEOUT:-360}" "${EPOCHS:-50}" "${TTA_VARIANTS:-plain,ema}" time_to_accuracy ;;
  accuracy) time_to_accuracy accuracy "${ACC_TIMEOUT:-400}" "${ACC_EPOCHS:-120}" "${ACC_VARIANTS:-ema-ds}" accuracy ;;
  pretrain)
    if [ "$SMALL" = 1 ]; then size=(--image-size 32 --batch-size 8 --images 64 --warmup 1 --steps 2 --repeats 1 --loader-steps 2)
    else size=(--image-size 224 --batch-size 256 --images 5000 --warmup 5 --steps 20 --repeats 3); fi
    timeout "${PRETRAIN_TIMEOUT:-300}" $PY -m benchmarks.pretrain_throughput --data "$CACHE" --method byol \
      --encoder "$ENCODER" "${size[@]}" --out-dir "$OUT" 2>&1 | log pretrain_throughput ;;
  packed)
    if [ "$SMALL" = 1 ]; then size=(--image-size 64 --runs 2 --slots 2 --epochs 1 --epoch-length 32 --batch-size 8)
    else size=(--image-size 256 --runs 4 --slots 4 --epochs 10 --epoch-length 320); fi
    timeout "${PACKED_TIMEOUT:-300}" $PY -m benchmarks.packed_runs --dataset-dir "$CACHE" --dataset-format cache \
      --encoder "$ENCODER" --labelled-patients 3 "${size[@]}" --out-dir "$OUT" 2>&1 | log packed_runs ;;
  ssl)
    if [ "$SMALL" = 1 ]; then size=(--image-size 64 --pretrain-epochs 2 --checkpoint-epochs 1 --pretrain-epoch-length 32
      --pretrain-batch-size 8 --epochs 1)
    else size=(--image-size 256 --pretrain-epochs "${SSL_EPOCHS:-50}" --checkpoint-epochs ${SSL_CHECKPOINTS:-5 10} --epochs 30); fi
    timeout "${SSL_TIMEOUT:-540}" $PY -m benchmarks.ssl_linear_probe --dataset-dir "$CACHE" --dataset-format cache \
      --methods mim byol --encoder "$ENCODER" "${size[@]}" --seeds ${SSL_SEEDS:-0} \
      --output-dir /tmp/ssl_runs --out-dir "$OUT" 2>&1 | log ssl_linear_probe ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
cp -n benchmarks/results/*.json benchmarks/results/*.png "$OUT/" 2>/dev/null  # never over what this session wrote
ls -la "$OUT"
