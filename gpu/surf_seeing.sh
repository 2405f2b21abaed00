#!/usr/bin/env bash
# SURf on the model that sees (issue 12, item 7): POPE (all 1,938 questions of each split) of the
# trained large-setting model (train_configs/seeing_large_smollm2.yaml) zero-shot, with vanilla RAG,
# under the shuffled / blank image controls, then SURf data construction with that model as the
# answerer, SURf training from its checkpoint (same LoRA), and POPE of the SURf model with and
# without RAG. Report: paired 95% bootstrap intervals of SURf+RAG minus vanilla RAG and vanilla RAG
# minus zero-shot (mmrag.pipelines.surf_report).
#
#   GPU=0 OUT=/tmp/out CKPT=output/seeing_large/smollm2/final bash gpu/surf_seeing.sh
#   SMOKE=1 OUT=/tmp/out bash gpu/surf_seeing.sh     # CPU check of the script's logic: a random tiny
#                                                    # LLM and tower, a few questions, 2 steps each
# Needs dataset/world_small: images/, annotations/, image_captions.json, llava/instruct_{train,test}.json,
# pope/{random,popular,adversarial}.jsonl; assets/efficientnet_lite0 and assets/smollm2-135m-instruct.
# Writes $OUT/surf_seeing_report.json and $OUT/surf_seeing_report.md (nothing else), prints the log tail.
# Knobs (env): SURF_SAMPLES (training conversations for construction, 1000), SURF_STEPS (0: the
# config's 5 epochs), CLIP_STEPS (the database's tiny CLIP, trained on the CPU, 200), EVAL_BATCH (256).
# The stages are resumable: running the script again on the same machine continues where it stopped.
# Runtime target: <= 8 min on one H200 (the pipeline is stopped at 430 s; the report is written from
# whatever finished, missing rows say "not run").
cd "$(dirname "$0")/.." || exit 1
GPU=${GPU:-0}
OUT=${OUT:-/tmp/surf_seeing_out}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the repository is not pip-installed there
RUN=${RUN:-output/surf_seeing_gpu}
LOG="$RUN/pipeline.log"
if [ "${SMOKE:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES=""
  RUN=${SMOKE_RUN:-output/surf_seeing_smoke}
  LOG="$RUN/pipeline.log"
  # no checkpoint: the pipeline's own base_train (2 steps) stands in for the trained model that sees
  ARGS=(--out "$RUN" --pope-max 12 --surf-samples 6 --surf-k 2 --surf-steps 2 --clip-steps 2 --eval-batch 8
        --set model.llm.path=null model.llm.dtype=float32 model.llm.config.hidden_size=32
        model.llm.config.intermediate_size=64 model.llm.config.num_hidden_layers=1
        model.llm.config.num_attention_heads=2 model.llm.config.num_key_value_heads=2
        model.vision_tower.path=null model.vision_tower.image_size=64
        "model.vision_tower.feature_cache=$RUN/feature_cache" run.max_steps=2 run.batch_size=4 "run.amp='no'")
  LIMIT=900
else
  export CUDA_VISIBLE_DEVICES=$GPU
  CKPT=${CKPT:-output/seeing_large/smollm2/final}
  if [ -f "$CKPT/trainable.safetensors" ]; then
    BASE=(--base-checkpoint "$CKPT")
  else  # the pipeline's base_train stage trains it first (train_configs/seeing_large_smollm2.yaml, into $RUN/base)
    echo "CKPT=$CKPT has no trainable.safetensors: training the base first (raise LIMIT for the whole table)"
    BASE=()
  fi
  ARGS=(--out "$RUN" "${BASE[@]}" --pope-max 0 --surf-samples ${SURF_SAMPLES:-1000} --surf-k 4
        --surf-steps ${SURF_STEPS:-0} --clip-steps ${CLIP_STEPS:-200} --eval-batch ${EVAL_BATCH:-256})
  LIMIT=${LIMIT:-430}
fi
for f in dataset/world_small/image_captions.json dataset/world_small/llava/instruct_train.json \
         dataset/world_small/pope/adversarial.jsonl; do
  [ -f "$f" ] || echo "missing $f (the pipeline will fail at the stage that reads it)"
done
mkdir -p "$RUN"
start=$(date +%s)
if [ "${SMOKE:-0}" = "1" ]; then
  # a random model answers nothing right, so construction yields no SURf sample; the smoke check then
  # trains SURf on a few of the subset's plain conversations (the wiring, not the method)
  timeout "$LIMIT" python scripts/run_surf.py --base seeing_large "${ARGS[@]}" --only yesno_data base_train db_captions \
    db surf_subset surf_data >"$LOG" 2>&1
  python - "$RUN/surf_data" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
if (work / "surf_train.json").is_file() and not json.loads((work / "surf_train.json").read_text()):
    (work / "surf_train.json").write_text(json.dumps(json.loads((work / "llava_subset.json").read_text())[:4]))
    print("smoke: surf_train.json was empty; filled with 4 plain conversations")
PY
fi
timeout "$LIMIT" python scripts/run_surf.py --base seeing_large "${ARGS[@]}" >>"$LOG" 2>&1
rc=$?
echo "pipeline exit code $rc after $(( $(date +%s) - start )) s (124: stopped at the ${LIMIT} s limit)"
timeout 120 python scripts/run_surf.py --base seeing_large "${ARGS[@]}" --only report >"$RUN/report.log" 2>&1 \
  || { echo "report failed:"; tail -n 20 "$RUN/report.log"; }
cp "$RUN/report.json" "$OUT/surf_seeing_report.json" 2>/dev/null
cp "$RUN/report.md" "$OUT/surf_seeing_report.md" 2>/dev/null
grep -v "it/s\]\|s/it\]" "$LOG" | tail -n 60
echo "----- report"
cat "$RUN/report.md" 2>/dev/null | head -n 60
