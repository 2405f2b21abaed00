#!/usr/bin/env bash
# Re-run only the GeMKR eval stages of output/gemkr_seeing_small (checkpoints as trained, untouched) at the
# reference's decoding setting (10 beams in 10 groups, 10 returned clues; diversity 0.5 and length penalty
# 1.5 are the knowledge_retrieval task's defaults, which the small configs do not override), into a new
# folder. Also re-runs the full model at the configs' 5/5 setting under the same load, as a reproduction
# check and a timing baseline. One process at a time, OMP_NUM_THREADS=1 (as the pipeline's --threads 1).
# Run from the repository root:  bash docs/measurements/gemkr_seeing_small_2026-11-30/reference_beams/run_evals.sh
set -u
SRC=output/gemkr_seeing_small
OUT=${OUT:-output/gemkr_seeing_small_beams10}
B10="evaluation.num_beams=10 evaluation.num_beam_groups=10 evaluation.num_return_sequences=10"
mkdir -p "$OUT/eval"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
run() {  # name cfg checkpoint overrides...
  local name=$1 cfg=$2 ckpt=$3; shift 3
  local cmd="python eval.py --cfg-path $cfg run.output_dir=$OUT/eval/$name model.checkpoint=$ckpt $*"
  [ -f "$OUT/eval/$name/retrieval_summary.json" ] && { echo "skip $name (done)"; return; }
  local t0=$(date +%s.%N)
  nice -n 10 $cmd > "$OUT/eval/$name.log" 2>&1
  local rc=$? t1=$(date +%s.%N)
  python -c "import json,sys; print(json.dumps({'stage': sys.argv[1], 'command': sys.argv[2], 'rc': int(sys.argv[3]), 'wall_s': round(float(sys.argv[5])-float(sys.argv[4]),1)}))" \
    "$name" "$cmd" "$rc" "$t0" "$t1" | tee -a "$OUT/stages.jsonl"
}
run gemkr eval_configs/gemkr_seeing_small.yaml $SRC/gemkr/final $B10
run gemkr_beams5_rerun eval_configs/gemkr_seeing_small.yaml $SRC/gemkr/final
run gemkr_no_constraint eval_configs/gemkr_seeing_small_unconstrained.yaml $SRC/gemkr/final $B10
run gemkr_no_region_features eval_configs/gemkr_seeing_small_noregion.yaml $SRC/gemkr_noregion/final $B10
run gemkr_no_prefix eval_configs/gemkr_seeing_small_noprefix.yaml $SRC/gemkr_noprefix/final $B10
