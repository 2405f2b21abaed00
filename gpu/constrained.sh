#!/usr/bin/env bash
# Constrained clue decoding at the LLaMA-7B shape (issue 16, item 1): the corpus constraint's host path
# (CorpusConstrainedLogitsProcessor) vs its device tables (DeviceCorpusConstraint) vs no constraint, at
# 64 and 128 queries a batch (10 beams, 100-embedding prompts, clues of 10 tokens, random bf16 weights,
# 10M-token Zipf corpus index built in memory by the bench), a torch.profiler summary of the device path
# at 128, then eval.py end to end on 5,046 questions (bench/bench_eval_generative.py) if time is left.
#
#   GPU=0 OUT=/tmp/out bash gpu/constrained.sh
#   SMOKE=1 OUT=/tmp/out bash gpu/constrained.sh     # CPU check of the script's logic: toy shapes
#
# Needs: nothing for the benches. For the end-to-end run: dataset/world_small/{corpus.csv, knowledge/test.json,
# images/, annotations/} and assets/llama_tokenizer (carried); index/tiny_clip_vision, index/world_small/
# {corpus,regions} are built by the bench when missing (~1-2 min, inside its time limit).
# Writes $OUT/constrained_bench.jsonl (one JSON line per bench run, each with a "run" label) and
# $OUT/constrained_log.txt (the runs' stdout/stderr tails). Runtime target: <= 8 min on one H200.
cd "$(dirname "$0")/.." || exit 1
source gpu/_bench_outputs.sh constrained constrained_bench.jsonl constrained_log.txt   # GPU, OUT, the environment, $JSONL and $LOG emptied
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
if [ "${SMOKE:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES=""
  GEN=(--toy --corpus-tokens 20000 --batches 1)
  Q64=4; Q128=8; E2E=(--toy --queries 8 --batch-size 8 --backends device,host)
  L_BENCH=300; L_E2E=300; BUDGET=900
else
  export CUDA_VISIBLE_DEVICES=$GPU
  GEN=(--batches 3)
  Q64=64; Q128=128; E2E=(--queries 5046 --batch-size 64 --backends ${E2E_BACKENDS:-auto})
  L_BENCH=180; L_E2E=300; BUDGET=470
fi
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }

# one bench run: label, time limit, args...; appends its JSON line (with "run") or an error line
bench() {
  local label=$1 limit=$2; shift 2
  local tmp; tmp=$(mktemp)
  timeout "$limit" python "$@" >"$tmp" 2>&1
  local rc=$?
  { echo "=== $label (exit $rc, limit $limit s)"; tail -n 60 "$tmp"; } >>"$LOG"
  local line; line=$(grep '^{' "$tmp" | tail -n 1)
  if [ -n "$line" ]; then
    python -c "import json,sys; r=json.loads(sys.argv[1]); r['run']=sys.argv[2]; print(json.dumps(r))" \
      "$line" "$label" >>"$JSONL"
  else
    echo "{\"run\": \"$label\", \"error\": \"exit code $rc (124: time limit), no JSON line; see constrained_log.txt\"}" >>"$JSONL"
  fi
  rm -f "$tmp"
  echo "$label: exit $rc after $(( $(date +%s) - start )) s"
}

# PARTS: which of "tests gen64 gen128 e2e" to run (all by default; a later lease may re-run only e2e)
PARTS=" ${PARTS:-tests gen64 gen128 e2e} "
part() { [[ "$PARTS" == *" $1 "* ]]; }

# the device tables == the host path, on this machine's GPU too (the cuda test is skipped on a CPU)
if part tests; then
timeout 120 python -m pytest -q tests/retrieval/test_device_constraint.py >"$OUT/.tests.txt" 2>&1
rc=$?
{ echo "=== tests (exit $rc)"; tail -n 15 "$OUT/.tests.txt"; } >>"$LOG"
echo "{\"run\": \"tests_device_constraint\", \"exit\": $rc, \"summary\": \"$(tail -n 1 "$OUT/.tests.txt" | tr -d '"')\"}" >>"$JSONL"
rm -f "$OUT/.tests.txt"
echo "tests: exit $rc after $(( $(date +%s) - start )) s"
fi

part gen64 && bench "gen64" "$L_BENCH" -m bench.bench_generative_retrieval "${GEN[@]}" --queries $Q64 --modes ours,ours_device,ours_device_fused,ours_noop
part gen128 && bench "gen128" "$L_BENCH" -m bench.bench_generative_retrieval "${GEN[@]}" --queries $Q128 --modes ours_device,ours_device_fused,ours,ours_noop --profile
# eval.py end to end on the rest of the budget (needs ~4 min: inputs, 7B model build, 5,046 queries)
limit=$(( $(left) < L_E2E ? $(left) : L_E2E ))
if ! part e2e; then
  :
elif [ "$limit" -gt 60 ]; then
  bench "eval_e2e" "$limit" -m bench.bench_eval_generative "${E2E[@]}"
else
  echo "{\"run\": \"eval_e2e\", \"error\": \"not run: $(left) s of the budget left\"}" >>"$JSONL"
fi
echo "done after $(( $(date +%s) - start )) s"
python - "$JSONL" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "modes" in r:
        qps = {m: f["queries_per_s"] for m, f in r["modes"].items()}
        print(r["run"], "q/s", qps, "share host", r.get("constraint_share_ours"), "device",
              r.get("constraint_share_ours_device"), "same clues", r.get("device_clues_equal_host"),
              "fused x", r.get("fused_speedup_vs_ours_device"))
    else:
        print(r["run"], {k: v for k, v in r.items() if k in ("runs", "error", "prepare_s")})
EOF
