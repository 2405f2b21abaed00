# usage: evalval.sh <ckpt_dir> <out_dir> [extra overrides...]
ck=$1; out=$2; shift 2
cd "$(dirname "$0")/../../.." && OMP_NUM_THREADS=2 nice -n 10 python eval.py --cfg-path eval_configs/seeing_small_pretrained_pope.yaml \
  model.checkpoint=$ck run.output_dir=$out "evaluation.question_file=dataset/world_small/pope_val/{split}.jsonl" \
  "evaluation.splits=[all]" "$@"
