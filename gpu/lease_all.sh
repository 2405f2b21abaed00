#!/usr/bin/env bash
# There, in /tmp/work after gpu/remote_setup.sh, started in its own session so it outlives the call:
#   (setsid nohup bash gpu/lease_all.sh > /tmp/lease_all.out 2>&1 < /dev/null &)
# Phases, most important first (results under /tmp/results/<name>/); what the 2026-11-30 (c) and (d)
# leases measured is not repeated:
#   1. two chains side by side. GPU 0: gpu/seeing_final.sh (issue 12: the val-chosen 224-px model on the
#      POPE test splits with every control), then the same script with MATCH_BIAS=1 (the small setting's
#      name-match answer path on the large model; it reuses the 224-px feature cache). GPU 1:
#      gpu/gemkr_seeing.sh with GEMKR_STEPS (1200), then gpu/constrained.sh PARTS=e2e (issue 16: eval.py end
#      to end on 5,046 queries with the cache-free decoder).
#   2. issue 16 on both GPUs: gpu/perf_multi.sh ONLY="create_index_1v2 search_2gpu" (the vectors of 1 vs 2
#      processes after the decode-route fix; the 2-GPU search's one differing neighbour).
# SURf on the seeing base, the perf grid and the GPU tests ran in (d); gpu/surf_seeing.sh, gpu/perf_multi.sh,
# gpu/gpu_tests.sh, gpu/seeing_step.sh and gpu/seeing_sweep.sh still run alone.
# /tmp/results/PHASE holds the phase under way; /tmp/results/DONE appears at the end. gpu/collect.sh copies.
cd /tmp/work || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:/tmp/work
R=/tmp/results; mkdir -p $R
phase() { echo "$1 $(date +%s)" > $R/PHASE; echo "phase $1 $(date)" >> $R/phases.txt; }
run() { local name=$1 gpu=$2; shift 2; mkdir -p $R/$name
  ( GPU=$gpu OUT=$R/$name CUDA_DEVICE_ORDER=PCI_BUS_ID "$@" > $R/$name/stdout.txt 2>&1; echo "rc $?" > $R/$name/rc.txt ) & }
phase 1
# GPU 0: the 224-px model on test (chosen on val), then the same recipe with the name-match answer path
chain0() { GPU=0 OUT=$R/seeing_final bash gpu/seeing_final.sh > $R/seeing_final/stdout.txt 2>&1; echo "rc $?" > $R/seeing_final/rc.txt
  GPU=0 OUT=$R/seeing_matchbias MATCH_BIAS=1 TAG=seeing_matchbias RUN=output/seeing_large_px224_mb \
    CACHE=output/seeing_large_px224/feature_cache bash gpu/seeing_final.sh > $R/seeing_matchbias/stdout.txt 2>&1
  echo "rc $?" > $R/seeing_matchbias/rc.txt; }
# GPU 1: GeMKR on SmolLM2 at the step count the time allows, then eval.py end to end with the constrained decoder
chain1() { GPU=1 OUT=$R/gemkr_seeing STEPS=${GEMKR_STEPS:-1200} DEADLINE_S=560 bash gpu/gemkr_seeing.sh > $R/gemkr_seeing/stdout.txt 2>&1
  echo "rc $?" > $R/gemkr_seeing/rc.txt
  GPU=1 OUT=$R/constrained PARTS=e2e bash gpu/constrained.sh > $R/constrained/stdout.txt 2>&1; echo "rc $?" > $R/constrained/rc.txt; }
mkdir -p $R/seeing_final $R/seeing_matchbias $R/constrained $R/gemkr_seeing
export CUDA_DEVICE_ORDER=PCI_BUS_ID
chain0 & chain1 & wait
phase 2
run perf_multi all env ONLY="create_index_1v2 search_2gpu" bash gpu/perf_multi.sh
wait
touch $R/DONE
