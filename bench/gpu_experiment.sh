#!/usr/bin/env bash
# The paper's experiment (issue 7) on a CUDA machine with a larger local model, e.g. Llama 3.1 8B Instruct.
#
# NOT RUN YET: no GPU was lent to the session that wrote this script, so it has only been checked on
# CPU through the same code path (docs/experiment/run.py with SmolLM2-135M). On CUDA nothing changes in
# code or config: load_model picks bf16 weights, finetune trains the LoRA weights in fp32 under bf16
# autocast with batch 32 (FinetuneConfig.batch_size = 0 means "auto"), generation batches 128 prompts.
#
# Usage:  bench/gpu_experiment.sh MODEL_DIR [OUT_DIR]
#   MODEL_DIR  a local transformers folder (config.json + safetensors) or a .gguf file; also $ETLNORM_GPU_MODEL
#   OUT_DIR    default docs/experiment-gpu/<model folder name>
# Env:     LIMIT       terms per split (default 600: the paper's full sets)
#          TASKS       default "hp go hgnc hgnc-protein" (hgnc-protein: the paper's protein name -> symbol)
#          RERANK      "1" (default): also train the HPO rerank adapter (etlnorm finetune --task rerank,
#                      4,000 queries) for the reranked row and the HPO cascade; "0" skips it
#          CONFIG      fine-tuning TOML (default docs/experiment/finetune.toml; the paper trained longer,
#                      consider epochs = 5 and learning_rate = 2e-4 for an 8B model)
#          ETLNORM_DATABASE_URL / ETLNORM_HOME as for every etlnorm command (ontologies are loaded if missing)
# Needs:   a CUDA build of torch in .venv (the CPU wheel cannot see the GPU), ~20 GB of GPU memory for 8B in bf16.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${1:-${ETLNORM_GPU_MODEL:-}}"
if [[ -z "$MODEL" ]]; then
  echo "usage: $0 MODEL_DIR [OUT_DIR]   (or set ETLNORM_GPU_MODEL)" >&2
  exit 2
fi
if [[ ! -e "$MODEL" ]]; then
  echo "model $MODEL not found (a local folder or .gguf file is required: the machine may be offline)" >&2
  exit 2
fi
OUT="${2:-docs/experiment-gpu/$(basename "${MODEL%/}")}"
LIMIT="${LIMIT:-600}"
TASKS="${TASKS:-hp go hgnc hgnc-protein}"
RERANK="${RERANK:-1}"
CONFIG="${CONFIG:-docs/experiment/finetune.toml}"
PY=.venv/bin/python
ETL=.venv/bin/etlnorm

"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device: install a CUDA build of torch in .venv first")
print(f"CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
PY

"$ETL" db init
for o in hp go hgnc; do
  if ! "$PY" -c "import sys; from etlnorm.db.engine import ready_engine; from etlnorm.ontology.store import list_ontologies
sys.exit(0 if list_ontologies(ready_engine(), sys.argv[1]) else 1)" "$o"; then
    "$ETL" ontology load "$o" || "$ETL" ontology load "$o" --source pinned
  fi
  "$ETL" index build --ontology "$o" --labels-only
done

mkdir -p "$OUT"
start=$(date +%s)
rerank_args=()
if [[ "$RERANK" == "1" ]]; then
  "$ETL" index build --ontology hp
  "$ETL" finetune --ontology hp --task rerank --base "$MODEL" --queries 4000 --eval-limit 0 \
    --out "$OUT/adapters/hp-rerank" 2>&1 | tee "$OUT/rerank.log"
  rerank_args=(--rerank-adapter "hp=$OUT/adapters/hp-rerank")
fi
# shellcheck disable=SC2086  # TASKS is a word list
"$PY" docs/experiment/run.py $TASKS --base "$MODEL" --limit "$LIMIT" --config "$CONFIG" \
  --out "$OUT" --adapters "$OUT/adapters" "${rerank_args[@]}" 2>&1 | tee "$OUT/run.log"
echo "wall time: $(( $(date +%s) - start )) s; report: $OUT/README.md" | tee -a "$OUT/run.log"
