#!/usr/bin/env bash
# The default table's model (scripts/run_default.py, output/default: the random tiny CLIP tower), eval only:
# GeMKR constrained and unconstrained at the reference's 10/10 decoding, the constrained model again at the
# configs' 5/5 (timing baseline, reproduction check), and the dense dual encoder (unchanged config; its
# per-question results are needed for the paired differences and output/default has none). No-regions /
# no-prefix are not here: output/default holds no trained checkpoint of them (eval only).
# Run from the repository root:  bash docs/measurements/gemkr_seeing_small_2026-11-30/reference_beams/run_default_evals.sh
set -u
SRC=output/default
OUT=${OUT:-output/default_beams10}
B10="evaluation.num_beams=10 evaluation.num_beam_groups=10 evaluation.num_return_sequences=10"
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
run gemkr eval_configs/gemkr_tiny_world.yaml model.checkpoint=$SRC/gemkr/final $B10
run gemkr_beams5_rerun eval_configs/gemkr_tiny_world.yaml model.checkpoint=$SRC/gemkr/final
run gemkr_no_constraint eval_configs/gemkr_tiny_world_unconstrained.yaml model.checkpoint=$SRC/gemkr/final $B10
run dense_dual_encoder eval_configs/gemkr_tiny_world_dense.yaml
