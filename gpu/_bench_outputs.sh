# Sourced from the repository root by the gpu/ bench scripts that write one JSON-lines file and one log:
#   source gpu/_bench_outputs.sh NAME JSONL_FILE LOG_FILE
# GPU (default 0) and OUT (default /tmp/NAME_out, created), the environment every bench needs there (the
# repository is not pip-installed on the GPU machine: it goes on PYTHONPATH), and JSONL / LOG emptied.
GPU=${GPU:-0}
OUT=${OUT:-/tmp/$1_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
JSONL="$OUT/$2"
LOG="$OUT/$3"
: >"$JSONL"
: >"$LOG"
