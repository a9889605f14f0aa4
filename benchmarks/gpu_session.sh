#!/usr/bin/env bash
# One lent-GPU session (see ../shared/device/README.md): the benchmarks that need a GPU, from wheels and a
# slice cache carried in .device/ (git-ignored):
#   pip download (python 3.12 manylinux wheels) monai==1.6.1 pytorch-ignite==0.5.5 lightly -d .device/whl
#   .venv/bin/cardioseg data cache ../shared/data/acdc_ssl4mis --out .device/acdc256.xz --size 256
# then on the device, with carry [".device"]:  STEPS="throughput tta" bash benchmarks/gpu_session.sh
# One device command may run 600 s and return 8 files: every step writes under $WORK, and the end packs it
# into $OUT/gpu_session.tgz. Each step's time limit is cut to what is left before DEADLINE (seconds since
# the script started), so the packing always happens; a tta or accuracy step keeps 30 s of its limit to
# report its runs from their logs (time_to_accuracy --report-only) when the limit cuts one. First, always:
# the carried xz cache is rewritten uncompressed (as a user keeps it on local disk; the runs read that).
# Then STARTUP: "warm" (the default) runs a few training steps in a fresh process, which loads the CUDA
# libraries of a fresh machine once so the steps after it compare like with like (about 25 s); "time"
# runs benchmarks.startup, which times the parts before steady training in four fresh processes (more
# than 90 s on a fresh H200; it prints and saves each part as it goes); 0 does neither, for a second
# call on a warm machine.
# Steps (estimates on an H200, from earlier runs):
#   graphtest   tests/test_cuda_graphs.py: a replayed step (cuda_graphs "network" and "step") trains as the
#               eager one; run it first, so a failed capture is known before the benchmarks use it (about 60 s)
#   throughput  fine-tuning train step: the fast path and its levers, VARIANTS, with the torch.profiler
#               tables of PROFILE, then PROFILE's first at batch 128. The default: the whole step as one
#               CUDA graph (stepgraph: the bundle's cuda_graphs "step") and the network's graphs captured
#               without tracing (graphed: cuda_graphs "network"), on whole slices and on windows (crop),
#               against the eager step and the network compiled in one graph (graphs, against 2,102 images/s
#               in 11 graphs); the JSON is rewritten after each (issue 10, target 1; give it 300 s: an
#               Inductor compile takes about a minute)
#   tta         time to 0.90 val Dice from the command's start, one process per TTA_VARIANTS entry
#               (levers and bundle overrides joined by +, batch 32 unless one says otherwise; each run
#               stops at the first epoch with mean val Dice TTA_STOP (0.9; empty: run the whole
#               schedule). The default: windows (crop) with the step graph for 80 epochs, against 84.0 s
#               for crop+cudagraphs on 2026-11-28; whole slices with the step graph for 50; windows with
#               the network's graphs (graphed) for 80: about 90 s a run; issue 10, target 2)
#   accuracy    one long run, ACC_VARIANTS (whole slices, weight average, deep supervision, the step as one
#               CUDA graph) of ACC_EPOCHS (110: about 130 s if an epoch takes 1 s), then
#               benchmarks.eval_options on its model (about 40 s; issue 10, target 3)
#   pretrain    BYOL ResNet-50 224 px pretraining images/s, view loader vs lightly's pipeline (issue 8)
#   packed      PACKED_RUNS (8) few-label runs of PACKED_EPOCHS (5) one after another and PACKED_SLOTS (4) at
#               a time, each way with a process per run and with reused worker processes (issue 10, target
#               4; 3 runs of 5 epochs did not finish in 130 s: give it a call of its own)
#   ssl         specialist MIM and BYOL pretraining (SSL_EPOCHS, default 50, at 256 px) on the cache's train
#               patients, then the linear probe of their checkpoints after SSL_CHECKPOINTS epochs and at the
#               end against a random encoder, SSL_SEEDS (issue 8's evidence; not yet timed on a GPU: give it
#               a call of its own)
# Dry run on the CPU at tiny size: PY=.venv/bin/python CACHE=tiny.xz ENCODER=resnet18 EPOCHS=1 STEPS=... SMALL=1
set -uo pipefail
PY=${PY:-python3}
if [ "$PY" = python3 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl
  $PY -m compileall -q -j 0 /tmp/site "$PWD/cardioseg" > /dev/null  # bytecode, as pip leaves it; not in any timing
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export PYTHONUNBUFFERED=1 CI=true
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/gpu_session}
DEADLINE=${DEADLINE:-570}
# a machine can keep /tmp from an earlier session: start from nothing, so no old result is packed again and
# no run folder of an earlier run is refused as someone else's
if [ "$WORK" != /tmp/gpu_session ] && [ -n "$(ls -A "$WORK" 2>/dev/null)" ]; then
  echo "WORK=$WORK is not empty: give an empty or new folder (only the default /tmp/gpu_session is cleared)" >&2
  exit 2
fi
rm -rf /tmp/gpu_session /tmp/tta_runs /tmp/accuracy_runs /tmp/ssl_runs
mkdir -p "$OUT" "$WORK"
CACHE=${CACHE:-.device/acdc256.xz}
ENCODER=${ENCODER:-resnet50}
SMALL=${SMALL:-0}  # 1: tiny sizes for a CPU dry run
$PY -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)"
log() { grep -v Warning | tee "$WORK/$1.log"; }
limit() {  # SECONDS: that, or what is left before DEADLINE less 10 s for packing, whichever is less
  local left=$((DEADLINE - SECONDS - 10))
  echo $(($1 < left ? $1 : (left > 1 ? left : 1)))
}
time_to_accuracy() {  # STEP TIMEOUT EPOCHS VARIANTS RESULT_NAME [STOP_AT]: one benchmarks.time_to_accuracy run
  if [ "$SMALL" = 1 ]; then size=(--image-size 64 --epochs 1 --batch-size 4)
  else size=(--epochs "$3" --batch-size 32); fi
  local args=(--dataset-dir "$CACHE" --dataset-format cache --encoder "$ENCODER" "${size[@]}" --learning-rate 0.002
    --variants "$4" --name "$5" ${6:+--stop-at "$6"} --output-dir "/tmp/$1_runs" --out-dir "$WORK")
  local seconds; seconds=$(limit "$2"); seconds=$((seconds > 60 ? seconds - 30 : seconds))  # 30 s for a report
  timeout "$seconds" $PY -m benchmarks.time_to_accuracy "${args[@]}" 2>&1 | log "$5"
  if [ "${PIPESTATUS[0]}" != 0 ]; then  # cut by its limit: report what the runs logged, on this machine
    timeout "$(limit 30)" $PY -m benchmarks.time_to_accuracy "${args[@]}" --report-only 2>&1 | log "$5_report"
  fi
  for run in /tmp/"$1"_runs/*/; do  # the curves, also of a run cut off by its limit
    cp "$run/metrics.jsonl" "$WORK/$1_$(basename "$run").jsonl" 2>/dev/null
    cp "${run%/}.log" "$WORK/$1_$(basename "$run").log" 2>/dev/null  # its console, timestamped
  done
}
PLAIN=/tmp/$(basename "${CACHE%.*}").npz
$PY -m cardioseg --quiet data cache "$CACHE" --out "$PLAIN" --compression none --overwrite 2>&1 | log unpack
if [ "$SMALL" = 1 ]; then size=(--batch-size 4 --image-size 64 --steps 2); else size=(--batch-size 64); fi
case ${STARTUP:-warm} in
  time) timeout "$(limit 120)" $PY -m benchmarks.startup --cache "$CACHE" --plain "$PLAIN" --encoder "$ENCODER" "${size[@]}" \
    --out-dir "$WORK" 2>&1 | log startup ;;
  warm) timeout "$(limit 60)" $PY -m benchmarks.startup --first-steps heuristic --encoder "$ENCODER" "${size[@]}" 2>&1 | log warm_up ;;
  0) ;;
  *) echo "STARTUP=$STARTUP: time, warm or 0" >&2; exit 2 ;;
esac
CACHE=$PLAIN
for step in ${STEPS:-graphtest throughput tta}; do
  case $step in
  graphtest) timeout "$(limit 150)" $PY -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py 2>&1 | log graph_tests ;;
  throughput)
    if [ "$SMALL" = 1 ]; then size=(--image-size 64 --batch-size 4 --steps 2 --warmup 1 --workers 0 --profile-steps 2)
    else size=(--batch-size "${BATCH:-64}" --steps "${TRAIN_STEPS:-30}" --workers "${WORKERS:-14}"); fi
    profile=${PROFILE:-fast-fused-stepgraph,fast-fused-crop-stepgraph}
    timeout "$(limit "${THROUGHPUT_TIMEOUT:-300}")" $PY -m benchmarks.train_throughput --dataset-dir "$CACHE" \
      --dataset-format cache --encoder "$ENCODER" "${size[@]}" --profile "$profile" \
      --variants "${VARIANTS:-fast-fused-stepgraph,fast-fused-graphed,fast-fused,fast-fused-crop-stepgraph,fast-fused-crop-graphed,fast-fused-crop,fast-fused-graphs}" \
      --name train_throughput_levers --out-dir "$WORK" 2>&1 | log throughput
    timeout "$(limit 60)" $PY -m benchmarks.train_throughput --dataset-dir "$CACHE" --dataset-format cache \
      --encoder "$ENCODER" "${size[@]}" --batch-size $((SMALL == 1 ? 8 : 128)) --variants "${profile%%,*}" \
      --name train_throughput_batch128 --out-dir "$WORK" 2>&1 | log throughput_batch128 ;;
  tta) time_to_accuracy tta "${TTA_TIMEOUT:-420}" "${EPOCHS:-40}" "${TTA_VARIANTS:-ema+ds+no-autotune+crop+stepgraph+epochs=80,ema+ds+no-autotune+stepgraph+epochs=50,ema+ds+no-autotune+crop+graphed+epochs=80}" time_to_accuracy "${TTA_STOP-0.9}" ;;
  accuracy)
    time_to_accuracy accuracy "${ACC_TIMEOUT:-400}" "${ACC_EPOCHS:-110}" "${ACC_VARIANTS:-ema+ds+no-autotune+stepgraph}" accuracy
    for run in /tmp/accuracy_runs/*/; do
      timeout "$(limit 90)" $PY -m benchmarks.eval_options --run-dir "$run" --dataset-dir "$CACHE" \
        --name eval_options --out-dir "$WORK" 2>&1 | log eval_options
    done ;;
  pretrain)
    if [ "$SMALL" = 1 ]; then size=(--image-size 32 --batch-size 8 --images 64 --warmup 1 --steps 2 --repeats 1 --loader-steps 2)
    else size=(--image-size 224 --batch-size 256 --images 5000 --warmup 5 --steps 20 --repeats 3); fi
    timeout "$(limit "${PRETRAIN_TIMEOUT:-300}")" $PY -m benchmarks.pretrain_throughput --data "$CACHE" --method byol \
      --encoder "$ENCODER" "${size[@]}" --out-dir "$WORK" 2>&1 | log pretrain_throughput ;;
  packed)
    if [ "$SMALL" = 1 ]; then size=(--image-size 64 --runs 3 --slots 2 --epochs 1 --epoch-length 32 --batch-size 8)
    else size=(--image-size 256 --runs "${PACKED_RUNS:-8}" --slots "${PACKED_SLOTS:-4}" --epochs "${PACKED_EPOCHS:-5}" --epoch-length 320); fi
    timeout "$(limit "${PACKED_TIMEOUT:-300}")" $PY -m benchmarks.packed_runs --dataset-dir "$CACHE" --dataset-format cache \
      --encoder "$ENCODER" --labelled-patients 3 "${size[@]}" --out-dir "$WORK" 2>&1 | log packed_runs ;;
  ssl)
    if [ "$SMALL" = 1 ]; then size=(--image-size 64 --pretrain-epochs 2 --checkpoint-epochs 1 --pretrain-epoch-length 32
      --pretrain-batch-size 8 --epochs 1)
    else size=(--image-size 256 --pretrain-epochs "${SSL_EPOCHS:-50}" --checkpoint-epochs ${SSL_CHECKPOINTS:-5 10} --epochs 30); fi
    timeout "$(limit "${SSL_TIMEOUT:-540}")" $PY -m benchmarks.ssl_linear_probe --dataset-dir "$CACHE" --dataset-format cache \
      --methods mim byol --encoder "$ENCODER" "${size[@]}" --seeds ${SSL_SEEDS:-0} \
      --output-dir /tmp/ssl_runs --out-dir "$WORK" 2>&1 | log ssl_linear_probe ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
echo "steps done at ${SECONDS} s"
tar -czf "$OUT/gpu_session.tgz" -C "$WORK" .
ls -laR "$WORK"
