#!/usr/bin/env bash
# Started by stage.sh: checks every import, holds the embedded PostgreSQL open for the later uploads
# (pgserver stops it when its last user exits), then gpu_experiment.sh's prepare step (ontologies loaded,
# indexes built on the GPU). Touches PREFIX/prepare.done at the end, whatever happened.
P=${PREFIX:-/tmp/etl}
cd "$(dirname "$0")/../.."
source bench/offline/setup.sh .gpu "$P"
python3 - <<'PY'
import importlib
for m in ["torch", "faiss", "polars", "sqlalchemy", "psycopg", "pgserver", "adbc_driver_postgresql.dbapi", "obonet",
          "rapidfuzz", "gguf", "peft", "sentence_transformers", "transformers", "sklearn", "onnxruntime", "etlnorm.cli",
          "etlnorm.experiment.paper", "etlnorm.finetune.llm_rerank", "etlnorm.tuning.plan"]:
    try:
        print("ok", m, getattr(importlib.import_module(m), "__version__", ""))
    except Exception as exc:  # report every missing piece at once
        print("IMPORT FAILED", m, repr(exc))
PY
python3 - "$ETLNORM_HOME" "$P/db.ready" > "$P/db.log" 2>&1 <<'PY' &
import sys, time
from pathlib import Path
from etlnorm.db.embedded import embedded_url
print(embedded_url(Path(sys.argv[1])), flush=True)
Path(sys.argv[2]).write_text("up")
time.sleep(10**6)
PY
for _ in $(seq 120); do [[ -e "$P/db.ready" ]] && break; sleep 1; done
cat "$P/db.log"
STEPS=prepare bash bench/gpu_experiment.sh "$P/out"
touch "$P/prepare.done"
wait
