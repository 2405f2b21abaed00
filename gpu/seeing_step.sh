#!/usr/bin/env bash
# The large seeing model's training step on one H200 (issue 16 item 6, last part): SmolLM2-135M shape
# (random weights, no asset), random EfficientNet-Lite0 tower with cached features, 2-layer GELU
# projector; full fine-tuning vs LoRA r16 q/k/v/o, target-only vs full-vocabulary logits, micro-batch
# 32/64/128 x 256 tokens, eager vs torch.compile (each decoder layer, or the whole decoder stack) vs
# CUDA graphs (reduce-overhead), 256 rows x 128 tokens (the data's rows are ~100 tokens); then
# train.py's data loader alone on this machine's CPUs (0/4/8 workers; needs dataset/world_small and
# assets/smollm2-135m-instruct for the tokenizer, else that part is skipped).
#
#   GPU=0 OUT=/tmp/out bash gpu/seeing_step.sh
#   SMOKE=1 OUT=/tmp/out bash gpu/seeing_step.sh     # CPU check of the script's logic: toy shapes
#
# Writes $OUT/seeing_step.jsonl (one JSON line per configuration, bench seeing_step; one seeing_loader
# line) and $OUT/seeing_step_log.txt. Runtime: <= 6.5 min, the GPU grid <= 6 (each part has its own
# time limit; a part cut short keeps the lines it wrote).
cd "$(dirname "$0")/.." || exit 1
source gpu/_bench_outputs.sh seeing_step seeing_step.jsonl seeing_step_log.txt   # GPU, OUT, the environment, $JSONL and $LOG emptied
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ "${SMOKE:-0}" = "1" ]; then
  export CUDA_VISIBLE_DEVICES=""
  COMMON=(--toy)
  EAGER="full:targets:none:2,full:all:none:2,lora:targets:none:2,lora:all:none:4"
  COMPILED="lora:targets:llm:2"
  GRAPHS=""
  SHORT="lora:targets:none:4"
  LOADER=(--workers 0,2 --loader-batches 4 --loader-batch 8)
  L_EAGER=120; L_COMPILED=240; L_GRAPHS=60; L_SHORT=60; L_LOADER=120
else
  export CUDA_VISIBLE_DEVICES=$GPU
  COMMON=()
  EAGER=""
  for mb in 64 128 32; do for t in full lora; do for lg in targets all; do
    EAGER="${EAGER:+$EAGER,}$t:$lg:none:$mb"; done; done; done
  # layers: one graph reused by the 30 decoder layers (compiles in seconds); llm: the whole stack
  COMPILED="full:targets:layers:128,lora:targets:layers:128,full:targets:llm:128,lora:targets:llm:128"
  GRAPHS="full:targets:layers:reduce-overhead:128,lora:targets:layers:reduce-overhead:128"
  SHORT="full:targets:none:256,lora:targets:none:256"   # the data's rows are ~100 tokens: 256 rows x 128
  LOADER=(--workers 0,4,8 --loader-batches 60 --loader-batch 32)
  L_EAGER=110; L_COMPILED=120; L_GRAPHS=90; L_SHORT=40; L_LOADER=30
fi
run() {  # run LABEL LIMIT ARGS...: one bench process, its output tail in the log, never fatal
  local label=$1 limit=$2; shift 2
  echo "== $label ($(date -u +%T), limit ${limit}s)" >>"$LOG"
  timeout "$limit" python -m bench.bench_seeing_step "$@" --out "$JSONL" >"$OUT/.part.txt" 2>&1
  echo "== $label exit $? ($(date -u +%T))" >>"$LOG"
  grep -v '^{' "$OUT/.part.txt" | grep -iv warn | tail -n 25 >>"$LOG"
  rm -f "$OUT/.part.txt"
}
[ -n "$EAGER" ] && run eager "$L_EAGER" "${COMMON[@]}" --configs "$EAGER"
[ -n "$COMPILED" ] && run compiled "$L_COMPILED" "${COMMON[@]}" --configs "$COMPILED"
[ -n "$GRAPHS" ] && run cudagraphs "$L_GRAPHS" "${COMMON[@]}" --configs "$GRAPHS"
[ -n "$SHORT" ] && run short_rows "$L_SHORT" "${COMMON[@]}" --seq-len "${SHORT_SEQ:-128}" --target-tokens 16 --configs "$SHORT"
if [ -d dataset/world_small/llava ] && [ -f assets/smollm2-135m-instruct/tokenizer.json ]; then
  OMP_NUM_THREADS=1 run loader "$L_LOADER" --loader "${LOADER[@]}"
else
  echo "== loader skipped: needs dataset/world_small/llava and assets/smollm2-135m-instruct" >>"$LOG"
fi
echo "lines: $(wc -l <"$JSONL")" >>"$LOG"
python - "$JSONL" <<'PY' >>"$LOG" 2>&1
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("bench") == "seeing_step":
        print(f"{r['config']:40s} x{r.get('seq_len', '?'):<4} " + (f"{r['tokens_per_s']:>10.0f} tok/s  MFU {r['mfu_6nd']:.3f}  "
              f"{r['step_ms_mean']:.1f} ms  {r.get('peak_memory_gib')} GiB" if "error" not in r else r["error"][:120]))
    else:
        print("loader", json.dumps(r.get("workers")))
PY
cat "$LOG"
