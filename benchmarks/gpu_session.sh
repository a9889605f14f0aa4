#!/usr/bin/env bash
# One lent-GPU session (see ../shared/device/README.md): train-step throughput (fast path vs plain MONAI)
# and time to accuracy on real ACDC, from wheels and a slice cache carried in .device/ (git-ignored):
#   pip download (python 3.12 manylinux wheels) monai==1.6.1 pytorch-ignite==0.5.5 -d .device/whl
#   .venv/bin/cardioseg data cache ../shared/data/acdc_ssl4mis --out .device/acdc256.xz --size 256
# then on the device, with carry [".device"]:  bash benchmarks/gpu_session.sh
# Dry run on the CPU at tiny size: PY=.venv/bin/python CACHE=tiny.xz ENCODER=resnet18 EPOCHS=1 STEPS=2 ...
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
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)"
timeout "${THROUGHPUT_TIMEOUT:-300}" $PY -m benchmarks.train_throughput --dataset-dir "$CACHE" --dataset-format cache \
  --encoder "$ENCODER" --batch-size "${BATCH:-64}" --steps "${STEPS:-30}" --workers "${WORKERS:-14}" \
  --variants "${VARIANTS:-monai,fast,fast-compile}" 2>&1 | grep -v Warning | tee "$OUT/throughput.log"
timeout "${TTA_TIMEOUT:-240}" $PY -m benchmarks.time_to_accuracy --dataset-dir "$CACHE" --dataset-format cache \
  --encoder "$ENCODER" --epochs "${EPOCHS:-50}" --batch-size 32 --learning-rate 0.002 \
  2>&1 | grep -v Warning | tee "$OUT/time_to_accuracy.log"
cp benchmarks/results/*.json benchmarks/results/*.png "$OUT/" 2>/dev/null
ls -la "$OUT"
