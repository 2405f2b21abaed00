#!/bin/bash
# Issue 12, large setting (one H200): three SmolLM2 variants trained side by side, chosen on the val
# presence questions (pope_val/all), then the chosen one on the POPE test splits under every image
# control. Runs in the background (setsid) in /tmp/work; results under /tmp/la.
cd /tmp/work || exit 1
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site OMP_NUM_THREADS=2
L=train_configs/seeing_large_smollm2.yaml; E=eval_configs/seeing_large_pope.yaml; R=/tmp/la
mkdir -p $R
STEPS=${STEPS:-3000}
COMMON="run.max_steps=$STEPS run.log_every=100 run.progress=false run.num_workers=4"
train() { n=$1; shift; /usr/bin/time -f "%e s" python train.py --cfg-path $L run.output_dir=$R/$n $COMMON "$@" > $R/train_$n.log 2>&1; }
evalm() { n=$1; t=$2; shift 2; python eval.py --cfg-path $E run.output_dir=$R/eval_${n}_$t model.checkpoint=$R/$n/final "$@" > $R/eval_${n}_$t.log 2>&1; }
VAL="evaluation.question_file=dataset/world_small/pope_val/{split}.jsonl evaluation.splits=[all]"
(train r16qkvo && evalm r16qkvo val $VAL) &
(train r16all "model.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]" && evalm r16all val $VAL) &
(train full model.lora.enabled=false model.llm.freeze=false model.llm.dtype=float32 run.init_lr=1e-4 run.min_lr=1e-5 && evalm full val $VAL) &
wait
best=$(python - <<'PY'
import json, pathlib
scores = {}
for n in ("r16qkvo", "r16all", "full"):
    f = pathlib.Path(f"/tmp/la/eval_{n}_val/results.json")
    if f.is_file():
        scores[n] = json.loads(f.read_text())["all"]["accuracy"]
print(max(scores, key=scores.get) if scores else "none")
PY
)
echo "$best" > $R/BEST
for c in none blank shuffled text_only; do evalm $best test_$c evaluation.image_control=$c & done
evalm $best val_shuffled $VAL evaluation.image_control=shuffled &
evalm $best val_blank $VAL evaluation.image_control=blank &
wait
touch $R/DONE
