#!/usr/bin/env bash
# One upload of a staged GPU run (README.md beside this): install the bundle parts that have arrived in
# .gpu/; once the wheels, the encoder and the ontology files are all in, start prepare.sh in its own
# session, so the database, the loads and the index builds go on while the next parts upload.
P=${PREFIX:-/tmp/etl}
cd "$(dirname "$0")/../.."
start=$SECONDS
source bench/offline/setup.sh .gpu "$P" || { echo "bundle setup failed"; exit 1; }
echo "parts installed: $(ls "$P/installed" | tr '\n' ' ')in $(( SECONDS - start )) s; model: ${ETLNORM_GPU_MODEL:-not yet}"
ready=1
for f in "$P/minilm/model.safetensors" "$P/minilm/modules.json" "$P"/home/ontologies/go/*.obo "$P/site/faiss" "$P/site/polars"; do
  [[ -e "$f" ]] || ready=0
done
if [[ $ready == 1 && ! -e "$P/prepare.started" ]]; then
  touch "$P/prepare.started"
  PREFIX="$P" setsid nohup bash bench/offline/prepare.sh > "$P/prepare.log" 2>&1 < /dev/null &
  echo "preparation started (log: $P/prepare.log)"
fi
[[ -e "$P/prepare.log" ]] && tail -5 "$P/prepare.log"
exit 0
