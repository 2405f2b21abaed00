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
source "$(dirname "$0")/_run_eval.sh"   # run NAME CFG OVERRIDES...
run gemkr eval_configs/gemkr_seeing_small.yaml model.checkpoint=$SRC/gemkr/final $B10
run gemkr_beams5_rerun eval_configs/gemkr_seeing_small.yaml model.checkpoint=$SRC/gemkr/final
run gemkr_no_constraint eval_configs/gemkr_seeing_small_unconstrained.yaml model.checkpoint=$SRC/gemkr/final $B10
run gemkr_no_region_features eval_configs/gemkr_seeing_small_noregion.yaml model.checkpoint=$SRC/gemkr_noregion/final $B10
run gemkr_no_prefix eval_configs/gemkr_seeing_small_noprefix.yaml model.checkpoint=$SRC/gemkr_noprefix/final $B10
