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
source "$(dirname "$0")/_run_eval.sh"   # run NAME CFG OVERRIDES...
run gemkr eval_configs/gemkr_tiny_world.yaml model.checkpoint=$SRC/gemkr/final $B10
run gemkr_beams5_rerun eval_configs/gemkr_tiny_world.yaml model.checkpoint=$SRC/gemkr/final
run gemkr_no_constraint eval_configs/gemkr_tiny_world_unconstrained.yaml model.checkpoint=$SRC/gemkr/final $B10
run dense_dual_encoder eval_configs/gemkr_tiny_world_dense.yaml
