#!/usr/bin/env bash
# There, in /tmp/work after gpu/remote_setup.sh, started in its own session so it outlives the call:
#   (setsid nohup bash gpu/lease_all.sh > /tmp/lease_all.out 2>&1 < /dev/null &)
# Phases, most important first (results under /tmp/results/<name>/):
#   1. two chains side by side. GPU 0: gpu/seeing_final.sh (issue 12: the val-chosen 224-px model on the
#      POPE test splits with every control), gpu/gpu_tests.sh, gpu/constrained.sh (issue 16 item 1).
#      GPU 1: gpu/surf_seeing.sh (issue 12: SURf on output/seeing_large/smollm2/final, the 160-px base of
#      the RESULTS test table), gpu/gemkr_seeing.sh with GEMKR_STEPS (1200) steps.
#   2. issue 16 on both GPUs: gpu/perf_multi.sh (nothing else running)
# gpu/seeing_step.sh and gpu/seeing_sweep.sh ran in the 2026-11-30 (c) lease; they still run alone.
# /tmp/results/PHASE holds the phase under way; /tmp/results/DONE appears at the end. gpu/collect.sh copies.
cd /tmp/work || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:/tmp/work
R=/tmp/results; mkdir -p $R
phase() { echo "$1 $(date +%s)" > $R/PHASE; echo "phase $1 $(date)" >> $R/phases.txt; }
run() { local name=$1 gpu=$2; shift 2; mkdir -p $R/$name
  ( GPU=$gpu OUT=$R/$name CUDA_DEVICE_ORDER=PCI_BUS_ID "$@" > $R/$name/stdout.txt 2>&1; echo "rc $?" > $R/$name/rc.txt ) & }
phase 1
# GPU 0: the 224-px model on test (chosen on val), then the CUDA-only tests and the constrained-decoding bench
chain0() { GPU=0 OUT=$R/seeing_final bash gpu/seeing_final.sh > $R/seeing_final/stdout.txt 2>&1; echo "rc $?" > $R/seeing_final/rc.txt
  GPU=0 OUT=$R/gpu_tests bash gpu/gpu_tests.sh > $R/gpu_tests/stdout.txt 2>&1; echo "rc $?" > $R/gpu_tests/rc.txt
  GPU=0 OUT=$R/constrained bash gpu/constrained.sh > $R/constrained/stdout.txt 2>&1; echo "rc $?" > $R/constrained/rc.txt; }
# GPU 1: SURf on the base whose test table is in docs/RESULTS.md (the config's 160-px recipe), then GeMKR on SmolLM2
chain1() { GPU=1 OUT=$R/surf_seeing LIMIT=600 CKPT=output/seeing_large/smollm2/final bash gpu/surf_seeing.sh > $R/surf_seeing/stdout.txt 2>&1
  echo "rc $?" > $R/surf_seeing/rc.txt
  GPU=1 OUT=$R/gemkr_seeing STEPS=${GEMKR_STEPS:-1200} DEADLINE_S=560 bash gpu/gemkr_seeing.sh > $R/gemkr_seeing/stdout.txt 2>&1
  echo "rc $?" > $R/gemkr_seeing/rc.txt; }
mkdir -p $R/seeing_final $R/gpu_tests $R/constrained $R/surf_seeing $R/gemkr_seeing
export CUDA_DEVICE_ORDER=PCI_BUS_ID
chain0 & chain1 & wait
phase 2
run perf_multi all bash gpu/perf_multi.sh
wait
touch $R/DONE
