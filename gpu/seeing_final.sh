#!/usr/bin/env bash
# Issue 12, large setting: the variant chosen on val by gpu/seeing_sweep.sh (224-px input: 89.2 on
# pope_val/all against the recipe's 87.4, 2026-11-30) trained once more from the config and evaluated on
# the POPE test splits under every image control through the pipeline (mmrag-run-seeing --setting large),
# plus the new checkpoint's own val score (to show the retrained model matches the one chosen).
#   GPU=0 OUT=/tmp/out bash gpu/seeing_final.sh      # ~10-12 min on one H200 (training ~5-8, four test evaluations)
#   SMOKE=1 OUT=/tmp/out bash gpu/seeing_final.sh    # CPU check: 1 layer, 2 steps, 8 questions a split
# Writes $OUT/seeing_final_report.json / .md (the pipeline's report: accuracy, yes-ratio, controls, paired
# gains, false "yes" by object frequency), $OUT/seeing_final_val.json and $OUT/seeing_final_logs.tgz.
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:?set OUT}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
VARIANT=(model.vision_tower.image_size=224)
if [ "${SMOKE:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES=""
  RUN=${RUN:-output/seeing_final_smoke}
  SET=("${VARIANT[@]}" model.llm.keep_layers=1 model.llm.dtype=float32 run.max_steps=2 run.batch_size=4
       run.num_workers=0 "run.amp='no'" "model.vision_tower.feature_cache=$RUN/feature_cache")
  MAX=(--pope-max 8); VAL_MAX=(evaluation.max_samples=8)
else
  export CUDA_VISIBLE_DEVICES=${GPU:-0}
  RUN=${RUN:-output/seeing_large_px224}
  SET=("${VARIANT[@]}" run.log_every=100 "model.vision_tower.feature_cache=$RUN/feature_cache")
  MAX=(); VAL_MAX=()
fi
mkdir -p "$RUN"
start=$(date +%s)
python scripts/run_seeing.py --setting large --out "$RUN" "${MAX[@]}" --set "${SET[@]}" > "$RUN/pipeline.log" 2>&1
echo "pipeline exit $? after $(( $(date +%s) - start )) s" | tee -a "$RUN/pipeline.log"
python eval.py --cfg-path eval_configs/seeing_large_pope.yaml run.output_dir="$RUN/val_none" \
  model.checkpoint="$RUN/smollm2/final" "evaluation.question_file=dataset/world_small/pope_val/{split}.jsonl" \
  "evaluation.splits=[all]" "${VAL_MAX[@]}" $(printf '%s\n' "${SET[@]}" | grep -E '^model\.') > "$RUN/val_none.log" 2>&1
echo "val exit $?" | tee -a "$RUN/pipeline.log"
cp "$RUN/val_none/results.json" "$OUT/seeing_final_val.json" 2>/dev/null
for f in report.json report.md; do cp "$RUN/$f" "$OUT/seeing_final_$f" 2>/dev/null; done
ls "$RUN"
tar czf "$OUT/seeing_final_logs.tgz" -C "$RUN" $(cd "$RUN" && ls -d pipeline.log val_none.log logs 2>/dev/null) 2>/dev/null
tail -n 30 "$RUN/pipeline.log"
