# Source on an offline CUDA machine to install a bundle from bench/offline/bundle.py and point etlnorm at it:
#
#   source bench/offline/setup.sh BUNDLE_DIR [PREFIX]      (PREFIX default /tmp/etlnorm-offline)
#
# Installs each part-N of BUNDLE_DIR not installed yet (parts may arrive one at a time; sourcing again
# installs the new ones): wheels into PREFIX/site with pip --no-index, the encoder into PREFIX/minilm,
# the GGUF pieces joined into PREFIX/SmolLM2-135M-Instruct.Q4_1.gguf once all have arrived, the
# ontology files into ETLNORM_HOME/ontologies (where `etlnorm ontology load NAME --source pinned` looks).
# Exports PYTHONPATH (the bundle's wheels and this checkout's src/ before the machine's packages),
# ETLNORM_HOME, ETLNORM_ENCODER_MODEL, ETLNORM_GPU_MODEL (once whole), PY and ETL for gpu_experiment.sh,
# and ETLNORM_DATABASE_URL=embedded unless one is set. Needs python3 with a CUDA build of torch.
BUNDLE="${1:?usage: source bench/offline/setup.sh BUNDLE_DIR [PREFIX]}"
PREFIX="${2:-/tmp/etlnorm-offline}"
mkdir -p "$PREFIX/site" "$PREFIX/installed" "$PREFIX/minilm" "$PREFIX/pieces" "$PREFIX/home/ontologies"
for part in "$BUNDLE"/part-*; do
  [[ -e "$PREFIX/installed/${part##*/}" ]] && continue
  if compgen -G "$part/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$PREFIX/site" \
      "$part"/wheels/*.whl || return 1
  fi
  [[ -d "$part/minilm" ]] && cp -r "$part/minilm/." "$PREFIX/minilm/"
  [[ -d "$part/gguf" ]] && cp "$part"/gguf/* "$PREFIX/pieces/"
  for packed in "$part"/ontologies/*/*.xz; do
    [[ -e "$packed" ]] || continue
    folder="$PREFIX/home/ontologies/$(basename "$(dirname "$packed")")"
    mkdir -p "$folder"
    python3 -c "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.open(sys.argv[1]).read())" \
      "$packed" "$folder/$(basename "$packed" .xz)"
  done
  touch "$PREFIX/installed/${part##*/}"
done
export PYTHONPATH="$PREFIX/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export ETLNORM_HOME="$PREFIX/home" ETLNORM_ENCODER_MODEL="$PREFIX/minilm"
export ETLNORM_DATABASE_URL="${ETLNORM_DATABASE_URL:-embedded}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false PYTHONUNBUFFERED=1
export PY=python3 ETL="python3 -m etlnorm"
pieces=("$PREFIX"/pieces/*.gguf.part*of*)
if [[ -e "${pieces[0]}" ]]; then
  whole="$PREFIX/$(basename "${pieces[0]%.part*}")"
  if [[ ! -e "$whole" && "${#pieces[@]}" -eq "$((10#${pieces[0]##*of}))" ]]; then
    cat "${pieces[@]}" > "$whole.partial" && mv "$whole.partial" "$whole"
  fi
fi
[[ -e "${whole:-}" ]] && export ETLNORM_GPU_MODEL="$whole"
