#!/usr/bin/env bash
# Issue 12, small setting's model on the GPU: does the grounding loss (model.grounding_loss_weight: each
# visual token covered by an object's box predicts its name) let the tiny from-scratch LLaMA (width 128 x 2,
# the CPU size) answer the VAL presence questions (dataset/world_small/pope_val/all.jsonl, 1,348) past the
# ~60 it plateaus at? Variants of stage 2 alone (seeing_small_stage2_instruct.yaml + the naming mix: listing
# 25%, listed 40%, direct 15%, conversations 20%), 2,500 steps of 32, trained side by side on one GPU; each
# evaluated with the image and with shuffled images; paired 95% bootstrap of every variant minus `base`.
# The grounding boxes go to the listing / listed / direct training files only (their images exclude the
# val images). Test questions are not touched.
#   GPU=0 OUT=/tmp/out bash gpu/seeing_grounded.sh      # ~6-8 min on one H200 (features ~1 min, 5 runs side by side)
#   SMOKE=1 OUT=/tmp/out bash gpu/seeing_grounded.sh    # CPU check: 3 steps, 16 questions
# Then the zero-LM name reader (docs/measurements/seeing_small_grounded_2026-11-30/name_reader.py) on base and the
# first-token variants: how far the projected tokens alone answer the val questions.
# Writes $OUT/seeing_grounded.json ({variant: {val, shuffled, train_s, minus_base, gain_over_shuffled, name_reader?}})
# and $OUT/seeing_grounded_logs.tgz.
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:?set OUT}; mkdir -p "$OUT"
W=$(mktemp -d /tmp/seeing_grounded.XXXXXX)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
S2=train_configs/seeing_small_stage2_instruct.yaml; E=eval_configs/seeing_small_pope.yaml
D=dataset/world_small; GB=$D/annotations/instances_train.json; CACHE=$W/feature_cache
MODEL=(model.llm.config.hidden_size=128 model.llm.config.intermediate_size=256 model.llm.config.num_hidden_layers=2
       model.vision_tower.feature_cache=$CACHE)
MIX=(datasets.objects.builder=llava_instruct "datasets.objects.data_path=$D/llava/objects_{split}.json" datasets.objects.image_root=$D
     datasets.objects.sample_ratio=0.25 datasets.listed.builder=llava_instruct "datasets.listed.data_path=$D/llava/yesno_listed_{split}.json"
     datasets.listed.image_root=$D datasets.listed.sample_ratio=0.4 datasets.yesno_balanced.sample_ratio=0.15
     datasets.llava_instruct.sample_ratio=0.2)
VAL=("evaluation.question_file=$D/pope_val/{split}.jsonl" "evaluation.splits=[all]")
COMMON=(model.checkpoint=null run.progress=false run.log_every=100 run.batch_size=32)
if [ "${SMOKE:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES=""; STEPS=3; COMMON=(model.checkpoint=null run.progress=false run.log_every=1 run.batch_size=4)
  [ -d output/seeing_small/feature_cache ] && CACHE=output/seeing_small/feature_cache   # the same tower: reads only
  MODEL=(model.llm.config.hidden_size=128 model.llm.config.intermediate_size=256 model.llm.config.num_hidden_layers=2
         model.vision_tower.feature_cache=$CACHE)
  VAL+=(evaluation.max_samples=16)
else
  export CUDA_VISIBLE_DEVICES=${GPU:-0}; STEPS=2500
fi
G="model.grounding_head=input datasets.objects.grounding_boxes=$GB datasets.listed.grounding_boxes=$GB datasets.yesno_balanced.grounding_boxes=$GB"
ALL="datasets.objects.grounding_tokens=all datasets.listed.grounding_tokens=all datasets.yesno_balanced.grounding_tokens=all"
declare -A VARIANTS=(
  [base]=""
  [g_first_w1]="model.grounding_loss_weight=1.0 $G"
  [g_first_w05]="model.grounding_loss_weight=0.5 $G"
  [g_all_w1]="model.grounding_loss_weight=1.0 $G $ALL"
  [g_first_w1_tied]="model.grounding_loss_weight=1.0 $G model.llm.config.tie_word_embeddings=true"
)
# the tower's features once, before the runs share the cache (the smoke check reads the filled CPU cache)
[ "${SMOKE:-0}" = "1" ] && [ "$CACHE" != "$W/feature_cache" ] || timeout 300 python -c "from pathlib import Path; from mmrag.pipelines.seeing import cache_features; \
cache_features(Path('.'), '$S2', ['model.vision_tower.feature_cache=$CACHE'], '$D/images', Path('$W/features_done.json'), 256)" \
  > $W/features.log 2>&1
for name in "${!VARIANTS[@]}"; do
  (
    start=$(date +%s)
    keys=$(echo ${VARIANTS[$name]} | tr ' ' '\n' | grep -E '^model\.')
    timeout 420 python train.py --cfg-path $S2 "${COMMON[@]}" "${MODEL[@]}" "${MIX[@]}" run.max_steps=$STEPS \
        run.output_dir=$W/$name ${VARIANTS[$name]} > $W/train_$name.log 2>&1 \
      && echo $(( $(date +%s) - start )) > $W/$name.train_s \
      && for control in none shuffled; do
           timeout 120 python eval.py --cfg-path $E run.output_dir=$W/eval_${name}_$control model.checkpoint=$W/$name/final \
             evaluation.image_control=$control "${VAL[@]}" "${MODEL[@]}" $keys > $W/eval_${name}_$control.log 2>&1
         done
  ) &
done
wait
# the zero-LM name reader of each model's visual tokens (does the grounded projector alone answer presence?)
for name in base g_first_w1 g_first_w1_tied; do
  [ -f $W/$name/final/trainable.safetensors ] && timeout 180 python docs/measurements/seeing_small_grounded_2026-11-30/name_reader.py \
    $W/$name/final "${MODEL[@]}" $(echo ${VARIANTS[$name]} | tr ' ' '\n' | grep -E '^model\.') \
    > $W/reader_$name.json 2> $W/reader_$name.log &
done
wait
python - "$W" "$OUT/seeing_grounded.json" <<'PY'
import json, pathlib, sys
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.pipelines.analysis import correct_by_question
work, out = pathlib.Path(sys.argv[1]), sys.argv[2]
def answers(name, control):
    f = work / f"eval_{name}_{control}" / "answers_all.jsonl"
    return correct_by_question(f) if f.is_file() else None
def result(name, control):
    f = work / f"eval_{name}_{control}" / "results.json"
    return json.loads(f.read_text())["all"] if f.is_file() else None
def diff(a, b):
    if a is None or b is None:
        return None
    ids = sorted(a)
    r = paired_bootstrap([a[i] for i in ids], [b[i] for i in ids])
    return {**r, "text": format_difference(r)}
table, base = {}, answers("base", "none")
for log in sorted(work.glob("train_*.log")):
    name = log.stem[len("train_"):]
    secs = work / f"{name}.train_s"
    seen = answers(name, "none")
    table[name] = {"val": result(name, "none"), "shuffled": result(name, "shuffled"),
                   "train_s": int(secs.read_text()) if secs.is_file() else None,
                   "gain_over_shuffled": diff(seen, answers(name, "shuffled")),
                   "minus_base": diff(seen, base) if name != "base" else None}
    reader = work / f"reader_{name}.json"
    if reader.is_file() and reader.read_text().strip():
        table[name]["name_reader"] = json.loads(reader.read_text().strip().splitlines()[-1])
json.dump(table, open(out, "w"), indent=2)
for name, row in table.items():
    v = row["val"]
    print(name, "val", None if v is None else f"{100 * v['accuracy']:.1f} yes {100 * v['yes_ratio']:.1f}",
          "minus base", (row["minus_base"] or {}).get("text"), "gain", (row["gain_over_shuffled"] or {}).get("text"))
PY
tar czf "$OUT/seeing_grounded_logs.tgz" -C "$W" $(cd "$W" && ls *.log)
