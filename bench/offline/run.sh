#!/usr/bin/env bash
# The last upload of a staged GPU run: wait for prepare.sh, then gpu_experiment.sh's bench, rerank and
# experiment steps (one task at a time), each under a time limit so that the whole stays within BUDGET
# seconds; after each step what is done is packed into $OUT (experiment.tgz, prepare.log, gpu.txt).
P=${PREFIX:-/tmp/etl}
BUDGET=${BUDGET:-540}
cd "$(dirname "$0")/../.."
source bench/offline/setup.sh .gpu "$P"
R="$P/out"
BACK="${OUT:-$P/back}"
mkdir -p "$R" "$BACK"
pack() {
  tar czf "$BACK/experiment.tgz" --exclude=adapters -C "$R" . 2>/dev/null
  cp "$P/prepare.log" "$BACK/" 2>/dev/null
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$BACK/gpu.txt" 2>&1
}
step() {  # step SECONDS STEP [TASK]
  local limit=$1
  shift
  (( limit > 20 )) || { echo "skipped $* (no time left)"; return; }
  echo "=== $* (limit $limit s, at $SECONDS s)"
  STEPS="$1" TASKS="${2:-}" timeout -k 5 "$limit" bash bench/gpu_experiment.sh "$R"
  echo "=== $* exit $? at $SECONDS s"
  pack
}
echo "model: ${ETLNORM_GPU_MODEL:-MISSING}"
for _ in $(seq 240); do [[ -e "$P/prepare.done" ]] && break; sleep 1; done
echo "preparation done: $([[ -e "$P/prepare.done" ]] && echo yes || echo NO) at $SECONDS s"
step 90 bench
step 170 rerank
for task in hp go hgnc-protein hgnc; do
  step $(( BUDGET - SECONDS - 25 )) experiment "$task"
done
echo "done at $SECONDS s"
