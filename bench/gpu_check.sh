#!/usr/bin/env bash
# The GPU check: one table of what hfkit does on one GPU (bench/gpu_check.py says what it runs).
#   bash bench/gpu_check.sh          # on a machine with a GPU (an H100: well under 8 minutes)
#   bash bench/gpu_check.sh --cpu    # tiny sizes on the CPU: the wiring (tested in make test)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# hfkit from this checkout, installed or not
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" bench/gpu_check.py "$@"
