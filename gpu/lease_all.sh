#!/usr/bin/env bash
# There, in /tmp/work after gpu/remote_setup.sh, started in its own session so it outlives the call:
#   (setsid nohup bash gpu/lease_all.sh > /tmp/lease_all.out 2>&1 < /dev/null &)
# Phases, most important first (each phase's scripts on their own GPU; results under /tmp/results/<name>/):
#   1. issue 12 tables on the seeing base: GPU 0 gpu/surf_seeing.sh (needs output/seeing_large/smollm2/final,
#      else it trains the base first), GPU 1 gpu/gemkr_seeing.sh beside the CUDA-only tests (gpu/gpu_tests.sh)
#   2. issue 16 single-GPU benches: GPU 0 gpu/seeing_step.sh, GPU 1 gpu/constrained.sh
#   3. issue 16 on both GPUs: gpu/perf_multi.sh (nothing else running)
#   4. issue 12, closing the gap on POPE random: gpu/seeing_sweep.sh (val only) on GPU 0
# /tmp/results/PHASE holds the phase under way; /tmp/results/DONE appears at the end. gpu/collect.sh copies.
cd /tmp/work || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:/tmp/work
R=/tmp/results; mkdir -p $R
phase() { echo "$1 $(date +%s)" > $R/PHASE; echo "phase $1 $(date)" >> $R/phases.txt; }
run() { local name=$1 gpu=$2; shift 2; mkdir -p $R/$name
  ( GPU=$gpu OUT=$R/$name CUDA_DEVICE_ORDER=PCI_BUS_ID "$@" > $R/$name/stdout.txt 2>&1; echo "rc $?" > $R/$name/rc.txt ) & }
phase 1
run surf_seeing 0 env CKPT=output/seeing_large/smollm2/final bash gpu/surf_seeing.sh
run gemkr_seeing 1 bash gpu/gemkr_seeing.sh
run gpu_tests 1 bash gpu/gpu_tests.sh
wait
phase 2
run seeing_step 0 bash gpu/seeing_step.sh
run constrained 1 bash gpu/constrained.sh
wait
phase 3
run perf_multi all bash gpu/perf_multi.sh
wait
phase 4
run seeing_sweep 0 bash gpu/seeing_sweep.sh
wait
touch $R/DONE
