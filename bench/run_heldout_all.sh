#!/usr/bin/env bash
# Every held-out figure of bench/RESULTS-heldout.md, in one go (about an hour on 2 cores, plus the
# fine-tuning: `etlnorm encoder finetune --ontology hp --protocol synonym` (~25 min) and then, with
# ETLNORM_ENCODER_MODELS='{"hp": "<home>/encoders/hp-synonym-s13"}', `etlnorm reranker finetune
# --ontology hp --protocol synonym` (~35 min)). Needs hp and go loaded (`etlnorm ontology load NAME
# --source pinned`) in ETLNORM_DATABASE_URL.
set -euo pipefail
home="${ETLNORM_HOME:-$HOME/.etlnorm}"
py="${PYTHON:-.venv/bin/python}"
enc="$home/encoders/hp-synonym-s13"
rr="$home/rerankers/hp-synonym-s13"
unset ETLNORM_ENCODER_MODELS ETLNORM_RERANKER_MODELS
"$py" bench/bench_heldout.py --ontology hp --protocols synonym --encoder "$enc" --reranker "$rr"
"$py" bench/bench_heldout.py --ontology hp --protocols synonym --encoder "$enc" --reranker "$rr" --llm-rerank --limit 500
"$py" bench/bench_heldout.py --ontology hp --protocols concept layperson typo
"$py" bench/bench_heldout.py --ontology go --protocols synonym typo
