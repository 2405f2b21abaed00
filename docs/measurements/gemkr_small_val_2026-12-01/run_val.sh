#!/bin/bash
# The val runs of README.md, from the repository root: two lanes at a time (2 shared CPU cores).
# lane A: train 1200, eval 1200; lane B: train 400, eval 400, train 800, eval 800, dense.
set -u
OUT=output/gemkr_small_val
VAL="datasets.gemkr_knowledge.val_images=index/world_small/knowledge_val_images.json evaluation.split=val evaluation.max_samples=null"
mkdir -p $OUT
timed() {  # name, command...: logs the command and its seconds to $OUT/commands.log
  local name=$1; shift
  local t0=$(date +%s.%N)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 "$@" > $OUT/$name.log 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(echo "$(date +%s.%N) - $t0" | bc) :: $*" >> $OUT/commands.log
}
steps() {
  local n=$1
  timed train_$n python train.py --cfg-path train_configs/gemkr_seeing_small.yaml $VAL run.max_steps=$n \
    run.output_dir=$OUT/gemkr_steps$n run.evaluate=false run.resume=auto
  timed eval_$n python eval.py --cfg-path eval_configs/gemkr_seeing_small.yaml $VAL \
    model.checkpoint=$OUT/gemkr_steps$n/final run.output_dir=$OUT/eval/gemkr_steps$n
}
( steps 1200 ) &
( steps 400; steps 800
  timed eval_dense python eval.py --cfg-path eval_configs/gemkr_seeing_small_dense.yaml $VAL \
    run.output_dir=$OUT/eval/dense_dual_encoder ) &
wait
