#!/usr/bin/env bash
# The paper's experiment (issue 7, 14) and the GPU speed figures (issues 14, 16) on a CUDA machine.
#
# Usage:  ETLNORM_GPU_MODEL=MODEL bench/gpu_experiment.sh [OUT_DIR]
#   MODEL    a local transformers folder (config.json + safetensors) or a .gguf file (all steps but prepare need it)
#   OUT_DIR  default docs/experiment-gpu
# Env:     STEPS       the steps to run, in order (default "prepare bench rerank experiment"):
#                      prepare    CUDA checked; ontologies loaded if missing; their indexes built on the GPU,
#                                 each timed into OUT_DIR/steps.txt (the encoder logs its device)
#                      bench      bench/bench_llm.py on the GPU: batched generation against a one-at-a-time
#                                 generate loop (issue 14's >= 20x), into OUT_DIR/bench_llm.txt
#                      rerank     the HPO rerank adapter (etlnorm finetune --task rerank, RERANK_QUERIES
#                                 queries) for the reranked row and the HPO cascade
#                      experiment docs/experiment/run.py on TASKS, LIMIT terms per split, then the summary
#          LIMIT       terms per split (default 600: the paper's full sets)
#          TASKS       default "hp go hgnc-protein hgnc" (hgnc-protein: the paper's protein name -> symbol)
#          RERANK_QUERIES  training queries of the rerank adapter (default 3000; RERANK_EVAL held-out ones scored, 500)
#          BENCH_N     terms of the batched generation benchmark (default 512; 16 for the one-at-a-time loop)
#          CONFIG      fine-tuning TOML (default docs/experiment/finetune-gpu.toml)
#          PY, ETL     the Python and the etlnorm command (default .venv/bin/python, .venv/bin/etlnorm)
#          DRY_CPU=1   run on the CPU anyway: a check of the script with a small LIMIT, not a measurement
#          ETLNORM_DATABASE_URL / ETLNORM_HOME as for every etlnorm command
# Needs:   a CUDA build of torch. An offline machine: bench/offline/bundle.py packs the rest,
#          bench/offline/setup.sh installs it and sets PY, ETL and ETLNORM_GPU_MODEL.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${ETLNORM_GPU_MODEL:-}"
OUT="${1:-docs/experiment-gpu}"
STEPS="${STEPS:-prepare bench rerank experiment}"
LIMIT="${LIMIT:-600}"
TASKS="${TASKS:-hp go hgnc-protein hgnc}"
RERANK_QUERIES="${RERANK_QUERIES:-3000}"
RERANK_EVAL="${RERANK_EVAL:-500}"
BENCH_N="${BENCH_N:-512}"
CONFIG="${CONFIG:-docs/experiment/finetune-gpu.toml}"
PY="${PY:-.venv/bin/python}"
read -r -a ETL <<< "${ETL:-.venv/bin/etlnorm}"
mkdir -p "$OUT"
if [[ "$STEPS" != prepare && ! -e "$MODEL" ]]; then
  echo "set ETLNORM_GPU_MODEL to a local model folder or .gguf file (the machine may be offline): '$MODEL' not found" >&2
  exit 2
fi

timed() {  # timed LABEL COMMAND...: run it, then append "LABEL: N s" to OUT/steps.txt
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "$label: $(( SECONDS - start )) s" | tee -a "$OUT/steps.txt"
}

prepare() {
  "$PY" - <<'PY'
import os, sys, torch
if not torch.cuda.is_available():
    if os.environ.get("DRY_CPU") == "1":
        sys.exit(print("no CUDA device: DRY_CPU=1, running on the CPU"))
    sys.exit("torch sees no CUDA device: install a CUDA build of torch first")
print(f"CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
PY
  "${ETL[@]}" db init
  for o in hp go hgnc; do
    if ! "$PY" -c "import sys; from etlnorm.db.engine import ready_engine; from etlnorm.ontology.store import list_ontologies
sys.exit(0 if list_ontologies(ready_engine(), sys.argv[1]) else 1)" "$o"; then
      "${ETL[@]}" ontology load "$o" || "${ETL[@]}" ontology load "$o" --source pinned
    fi
    timed "index $o labels" "${ETL[@]}" index build --ontology "$o" --labels-only
  done
  timed "index hp all" "${ETL[@]}" index build --ontology hp
}

bench() {
  timed "bench_llm" "$PY" bench/bench_llm.py --model "$MODEL" --n "$BENCH_N" --n-single 16 --batch-sizes 1,64,256 \
    --cache "${ETLNORM_HOME:-$HOME/.etlnorm}/ontologies" 2>&1 | tee "$OUT/bench_llm.txt"
}

rerank() {
  timed "rerank adapter" "${ETL[@]}" finetune --ontology hp --task rerank --base "$MODEL" --queries "$RERANK_QUERIES" \
    --eval-limit "$RERANK_EVAL" --out "$OUT/adapters/hp-rerank" 2>&1 | tee "$OUT/rerank.log"
}

experiment() {
  local rerank_args=()
  [[ -e "$OUT/adapters/hp-rerank/adapter_config.json" ]] && rerank_args=(--rerank-adapter "hp=$OUT/adapters/hp-rerank")
  # shellcheck disable=SC2086  # TASKS is a word list
  timed "experiment $TASKS" "$PY" docs/experiment/run.py $TASKS --base "$MODEL" --limit "$LIMIT" --config "$CONFIG" \
    --out "$OUT" --adapters "$OUT/adapters" "${rerank_args[@]}" 2>&1 | tee -a "$OUT/run.log"
}

for step in $STEPS; do
  case "$step" in
    prepare|bench|rerank|experiment) "$step" ;;
    *) echo "unknown step $step (prepare, bench, rerank, experiment)" >&2; exit 2 ;;
  esac
done
echo "report: $OUT/README.md"
