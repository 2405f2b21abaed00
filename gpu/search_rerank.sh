#!/usr/bin/env bash
# Exact GPU search (issue 16, item 3), second round: the torch backend's grouped bf16 top-k with and
# without the float32 re-rank of its candidates, 1.2M x 768 random unit rows, 65,536 queries, k=10, one
# GPU; each run times both modes on the same placed rows and checks recall@10 and the share of queries
# with the same 10 rows in order against an exact float32 search (2,048 queries). Runs, most important
# first: (1) row chunk x top-k group sweep at query block 8192; (2) the re-rank with its float32 rows
# on the host (16,384 queries); (3) when GPU names two devices (GPU=0,1), one GPU vs two, 131,072 queries.
# First, the re-rank's tests (tests/retrieval/test_exact_search_rerank.py, its GPU ones included; ~20 s).
#
#   GPU=0 OUT=/tmp/out bash gpu/search_rerank.sh
#   SMOKE=1 OUT=/tmp/out bash gpu/search_rerank.sh     # CPU check of the script's logic: toy shapes
#
# Needs: nothing carried. Writes $OUT/search_rerank.jsonl (one JSON line per run, each with a "run"
# label) and $OUT/search_rerank_log.txt (each run's output tail). Runtime: ~2-4 min on one H200
# (each run ~10 s to draw the rows on the host, then ~1-3 s per timed setting and mode).
cd "$(dirname "$0")/.." || exit 1
source gpu/_bench_outputs.sh search_rerank search_rerank.jsonl search_rerank_log.txt   # GPU, OUT, the environment, $JSONL and $LOG emptied
if [ "${SMOKE:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1
  SHAPE=(--rows 6000 --dim 32 --k 10 --dtype bfloat16 --check-queries 256)
  Q1=(--queries 1024); QHOST=(--queries 512); Q2=(--queries 1024)
  SWEEP="256x4096x8,256x4096x1,512x2048"
  ONE=cpu; TWO="cpu;cpu,cpu"; TWO_GPUS=1
  LIMIT=200
else
  export CUDA_VISIBLE_DEVICES=$GPU OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
  SHAPE=(--rows 1200000 --dim 768 --k 10 --check-queries 2048)
  Q1=(--queries 65536); QHOST=(--queries 16384); Q2=(--queries 131072)
  # row chunk x group at block 8192 (x1: the old whole-chunk topk, now on bf16 scores); 4096x262144: last best
  SWEEP=${SWEEP:-8192x262144x64,8192x1048576x64,8192x131072x64,8192x262144x32,8192x262144x128,8192x262144x1,4096x262144x64,16384x262144x64}
  ONE=cuda:0; TWO="cuda:0;cuda:0,cuda:1"
  case "$GPU" in *,*) TWO_GPUS=1 ;; *) TWO_GPUS=0 ;; esac
  LIMIT=300
fi

# one bench run: label, args...; appends its JSON line (with "run") or an error line
bench() {
  local label=$1; shift
  local tmp; tmp=$(mktemp)
  timeout "$LIMIT" python -m bench.bench_search "$@" >"$tmp" 2>&1
  local rc=$?
  { echo "=== $label (exit $rc, limit $LIMIT s): bench_search $*"; tail -n 40 "$tmp"; } >>"$LOG"
  local line; line=$(grep '^{' "$tmp" | tail -n 1)
  if [ -n "$line" ]; then
    python -c "import json,sys; r=json.loads(sys.argv[1]); r['run']=sys.argv[2]; print(json.dumps(r))" \
      "$line" "$label" >>"$JSONL"
  else
    python -c "import json,sys; print(json.dumps({'run': sys.argv[1], 'error': 'exit ' + sys.argv[2]}))" \
      "$label" "$rc" >>"$JSONL"
  fi
  rm -f "$tmp"
}

# the re-rank's CUDA-only tests (bf16 + re-rank == float64 brute force on the GPU), pytest from the lead's /tmp/site
tmp=$(mktemp)
timeout 120 python -m pytest -q -rs -p no:cacheprovider tests/retrieval/test_exact_search_rerank.py >"$tmp" 2>&1
rc=$?
{ echo "=== gpu_tests (exit $rc)"; tail -n 30 "$tmp"; } >>"$LOG"
python -c "import json,sys; print(json.dumps({'run': 'gpu_tests', 'exit': int(sys.argv[1]), 'summary': sys.argv[2]}))" \
  "$rc" "$(tail -n 1 "$tmp")" >>"$JSONL"
rm -f "$tmp"

bench sweep_1gpu "${SHAPE[@]}" "${Q1[@]}" --devices "$ONE" --sweep "$SWEEP"
bench rerank_rows_host "${SHAPE[@]}" "${QHOST[@]}" --devices "$ONE" --modes rerank --rerank-rows host \
  --sweep "${HOST_SWEEP:-8192x262144}"
if [ "$TWO_GPUS" = "1" ]; then
  bench gpus_1_vs_2 "${SHAPE[@]}" "${Q2[@]}" --devices "$TWO" --sweep "${TWO_SWEEP:-8192x262144,8192x1048576}"
fi
echo "search_rerank: $(wc -l <"$JSONL") runs in $JSONL"
cat "$JSONL" | cut -c1-400
