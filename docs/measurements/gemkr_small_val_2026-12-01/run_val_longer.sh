#!/bin/bash
# Post hoc, OUTSIDE the pre-registered rule (README.md): is val R@5 still rising past 1,200 steps?
# Same commands as run_val.sh at the step counts given as arguments, one after another.
set -u
OUT=output/gemkr_small_val
VAL="datasets.gemkr_knowledge.val_images=index/world_small/knowledge_val_images.json evaluation.split=val evaluation.max_samples=null"
timed() {
  local name=$1; shift
  local t0=$(date +%s.%N)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 "$@" > $OUT/$name.log 2>&1
  echo "$name rc=$? seconds=$(echo "$(date +%s.%N) - $t0" | bc) :: $*" >> $OUT/commands.log
}
for n in "$@"; do
  timed train_$n python train.py --cfg-path train_configs/gemkr_seeing_small.yaml $VAL run.max_steps=$n \
    run.output_dir=$OUT/gemkr_steps$n run.evaluate=false run.resume=auto
  timed eval_$n python eval.py --cfg-path eval_configs/gemkr_seeing_small.yaml $VAL \
    model.checkpoint=$OUT/gemkr_steps$n/final run.output_dir=$OUT/eval/gemkr_steps$n
done
