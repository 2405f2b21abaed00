# Sourced by run_evals.sh and run_default_evals.sh (which set OUT): run NAME CFG OVERRIDES... runs eval.py into
# $OUT/eval/NAME unless its retrieval_summary.json is there, logs to $OUT/eval/NAME.log and appends
# {stage, command, rc, wall_s} to $OUT/stages.jsonl. One process at a time, one thread.
mkdir -p "$OUT/eval"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
run() {  # name cfg overrides...
  local name=$1 cfg=$2; shift 2
  local cmd="python eval.py --cfg-path $cfg run.output_dir=$OUT/eval/$name $*"
  [ -f "$OUT/eval/$name/retrieval_summary.json" ] && { echo "skip $name (done)"; return; }
  local t0=$(date +%s.%N)
  nice -n 10 $cmd > "$OUT/eval/$name.log" 2>&1
  local rc=$? t1=$(date +%s.%N)
  python -c "import json,sys; print(json.dumps({'stage': sys.argv[1], 'command': sys.argv[2], 'rc': int(sys.argv[3]), 'wall_s': round(float(sys.argv[5])-float(sys.argv[4]),1)}))" \
    "$name" "$cmd" "$rc" "$t0" "$t1" | tee -a "$OUT/stages.jsonl"
}
