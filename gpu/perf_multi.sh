#!/usr/bin/env bash
# Issue 16 measurements on one host with 2 GPUs (cuda 0 and 1), <= 9 minutes of wall time in all:
#   embedding start-up included (bench_embedding --cold), GPU exact search on 1 and 2 GPUs (bench_search),
#   train.py through torchrun: 1 GPU vs DDP and FSDP on 2 (bench/train_py_recipe.py), create_index under
#   torchrun 1 vs 2 processes (bench_create_index), CaMML 3 shots vs none at 7B (bench_camml), batched
#   generation of the DataEngine / LRV generators and the GAVIE judge with a SmolLM2-135M-shaped model
#   (bench_generation).
#
#   OUT=/path/to/out bash gpu/perf_multi.sh          # on the GPU machine, from the repository root
#   SMOKE=1 OUT=/tmp/pm bash gpu/perf_multi.sh       # CPU check of the logic: toy sizes, 2 gloo processes
#
# Writes 3 files at $OUT top level: perf_multi.jsonl (one line per measurement: name, rc, seconds, and the
# bench's JSON line as "result", null when it printed none), perf_multi_logs.tar.gz (every log), and
# perf_multi_summary.txt (the headline figures). Each measurement is independent: a failure or a timeout is
# recorded and the next one runs. Every step's timeout is also capped by a global deadline (DEADLINE_S,
# default 520 s) so the whole script ends in time.
# Phases: A (in parallel) GPU 0: embedding start-up included, then the warm breakdown (compiled model);
#                         GPU 1: search on 1 GPU -> CaMML -> generation.
#         B (one after the other, nothing else running): train.py on 1 GPU, DDP on 2, FSDP on 2, search on
#           2 GPUs, create_index 1 vs 2 processes (the last two are the first skipped if time runs out).
# Env knobs: TRAIN_LLM_LAYERS (8), TRAIN_COMPILE_SCOPE (layers), TRAIN_COMPILE_MODE (default), TRAIN_STEPS (20),
#   ONLY (every measurement; else the names to run, e.g. "search_2gpu create_index_1v2"),
#   FSDP_SHARD (0; 1: also FSDP with sharded frozen weights), TRAIN32 (0; 1: also 1 GPU / DDP / FSDP with the full 32 layers, ~4 more minutes), EMB_IMAGES (16384),
#   EMB_COLD_MODES ("gpu@0.4,cpu"), GEN_MODEL_DIR (assets/smollm2-135m-instruct).
set -u
OUT=${OUT:?set OUT to the output folder}
SMOKE=${SMOKE:-0}
DEADLINE_S=${DEADLINE_S:-520}
mkdir -p "$OUT"
LOGS=$(mktemp -d /tmp/perf_multi_logs.XXXXXX)
RESULTS="$LOGS/results"
mkdir -p "$RESULTS"
T0=$(date +%s)
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}

left() { echo $(( DEADLINE_S - ($(date +%s) - T0) )); }

# measure NAME CAP_S GPUS CMD...: run CMD with CUDA_VISIBLE_DEVICES=GPUS under timeout min(CAP_S, time left),
# log to $LOGS/NAME.log, and keep its last JSON line as $RESULTS/NAME.json (one line: name, rc, seconds, result)
measure() {
  local name=$1 cap=$2 gpus=$3; shift 3
  # ONLY="name name ...": run just those measurements (a later lease re-measuring what changed)
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local budget; budget=$(left)
  [ "$budget" -lt "$cap" ] && cap=$budget
  local start; start=$(date +%s)
  if [ "$cap" -lt 15 ]; then
    echo "{\"name\": \"$name\", \"rc\": null, \"seconds\": 0, \"skipped\": \"deadline\", \"result\": null}" > "$RESULTS/$name.json"
    return
  fi
  echo "[$(( start - T0 ))s] $name (timeout ${cap}s, GPUs $gpus): $*" | tee -a "$LOGS/commands.txt"
  CUDA_VISIBLE_DEVICES=$gpus timeout --kill-after=10 "$cap" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local seconds=$(( $(date +%s) - start ))
  "$PY" - "$name" "$rc" "$seconds" "$LOGS/$name.log" > "$RESULTS/$name.json" <<'EOF'
import json, sys
name, rc, seconds, log = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
result = None
for line in reversed(open(log, errors="replace").read().splitlines()):
    line = line.strip()
    if line.startswith("{") and line.endswith("}"):
        try:
            result = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
tail = None if result is not None else open(log, errors="replace").read()[-1500:]
print(json.dumps({"name": name, "rc": rc, "seconds": seconds, "timed_out": rc in (124, 137), "result": result,
                  **({"log_tail": tail} if tail else {})}))
EOF
  echo "[$(( $(date +%s) - T0 ))s] $name done: rc=$rc in ${seconds}s" | tee -a "$LOGS/commands.txt"
}

TORCHRUN=("$PY" -m torch.distributed.run --standalone)
if [ "$SMOKE" = "1" ]; then
  export OMP_NUM_THREADS=1
  EMB_COLD=("$PY" -m bench.bench_embedding --toy --workers 1 --db-rows 0 --cold cpu --cold-only)
  EMB_WARM=("$PY" -m bench.bench_embedding --toy --workers 1 --db-rows 0 --model-batches 2)
  SEARCH1=("$PY" -m bench.bench_search --toy --devices cpu --sweep 1024x8192,2048x20000)
  SEARCH2=("$PY" -m bench.bench_search --toy --devices "cpu,cpu" --sweep 2048x20000)
  CAMML=("$PY" -m bench.bench_camml --toy)
  GEN=("$PY" -m bench.bench_generation --toy)
  TRAIN_ARGS=(--toy --steps 2 --warmup 2)
  TRAIN32_ARGS=(--toy --steps 2 --warmup 2 --llm-layers 3)
  WRAPPERS=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m bench.bench_multi_gpu --toy
            --strategy single,ddp,ddp_dict_batch,fsdp_replicate)
  CI=("$PY" -m bench.bench_create_index --toy --nprocs 1,2)
  G0=""; G1=""; G01=""
else
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
  EMB_COMMON=(--model-name ViT-L-14 --images "${EMB_IMAGES:-16384}" --batch-size 512 --workers 14 --db-rows 0)
  EMB_COLD=("$PY" -m bench.bench_embedding "${EMB_COMMON[@]}" --cold "${EMB_COLD_MODES:-gpu@0.4,cpu}" --prefetch 2
            --cold-only)
  EMB_WARM=("$PY" -m bench.bench_embedding "${EMB_COMMON[@]}" --decode gpu@0.4 --compile --model-batches 10)
  SEARCH1=("$PY" -m bench.bench_search --rows 1200000 --dim 768 --queries 65536 --k 10 --devices cuda:0
           --sweep 8192x262144x64,8192x1048576x64,4096x262144x64,8192x262144x1 --check-queries 2048)
  SEARCH2=("$PY" -m bench.bench_search --rows 1200000 --dim 768 --queries 131072 --k 10 --devices cuda:0,cuda:1
           --sweep 8192x262144x64,16384x262144x64 --check-queries 2048)
  CAMML=("$PY" -m bench.bench_camml --shots 3 --steps 4 --warmup 2)
  GEN=("$PY" -m bench.bench_generation --model-dir "${GEN_MODEL_DIR:-assets/smollm2-135m-instruct}" --random-weights
       --batch-size 64 --items 128 --lrv-items 64)
  TRAIN_ARGS=(--llm-layers "${TRAIN_LLM_LAYERS:-8}" --steps "${TRAIN_STEPS:-20}" --warmup "${TRAIN_STEPS:-20}"
              --compile-scope "${TRAIN_COMPILE_SCOPE:-layers}" --compile-mode "${TRAIN_COMPILE_MODE:-default}")
  TRAIN32_ARGS=(--llm-layers 32 --steps 10 --warmup 10
                --compile-scope "${TRAIN_COMPILE_SCOPE:-layers}" --compile-mode "${TRAIN_COMPILE_MODE:-default}")
  # one GPU, one process: each wrapper's own cost (no communication) and its host waits per step
  WRAPPERS=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m bench.bench_multi_gpu --llm-layers 8
            --steps 10 --warmup 5 --compile-scope layers
            --strategy single,ddp,ddp_dict_batch,fsdp_replicate)
  CI=("$PY" -m bench.bench_create_index --model-name ViT-L-14 --images 16384 --batch-size 512 --workers 12
      --decode gpu --cpu-decode-share 0.4 --shard-size 1024 --nprocs 1,2 --timeout 75)
  G0=0; G1=1; G01=0,1
fi

# ---- phase A: GPU 0 embedding (start-up included, then warm) | GPU 1 search (1 GPU) -> CaMML -> generation
(
  measure embedding_cold 130 "$G0" "${EMB_COLD[@]}"
  measure embedding_warm 140 "$G0" "${EMB_WARM[@]}"
  measure wrappers_1gpu 150 "$G0" "${WRAPPERS[@]}"
) &
PID_A0=$!
(
  measure search_1gpu 90 "$G1" "${SEARCH1[@]}"
  measure camml_7b 110 "$G1" "${CAMML[@]}"
  measure generation 160 "$G1" "${GEN[@]}"
) &
PID_A1=$!
wait $PID_A0 $PID_A1

# ---- phase B: nothing else running; train.py 1 GPU (the baseline of both 2-GPU runs), DDP, FSDP, then 2-GPU
# search and create_index
measure train_1gpu 100 "$G0" "${TORCHRUN[@]}" --nproc_per_node 1 -m bench.train_py_recipe "${TRAIN_ARGS[@]}"
measure train_2gpu_ddp 100 "$G01" "${TORCHRUN[@]}" --nproc_per_node 2 -m bench.train_py_recipe --distributed ddp "${TRAIN_ARGS[@]}"
measure train_2gpu_fsdp 100 "$G01" "${TORCHRUN[@]}" --nproc_per_node 2 -m bench.train_py_recipe --distributed fsdp "${TRAIN_ARGS[@]}"
# the old sharded-frozen FSDP (measured 2026-11-30 c: 1.617x): only when asked, the deadline is tight
[ "${FSDP_SHARD:-0}" = "1" ] && measure train_2gpu_fsdp_shard 100 "$G01" "${TORCHRUN[@]}" --nproc_per_node 2 \
  -m bench.train_py_recipe --distributed fsdp --fsdp-frozen shard "${TRAIN_ARGS[@]}"
if [ "${TRAIN32:-0}" = "1" ]; then
  measure train32_1gpu 150 "$G0" "${TORCHRUN[@]}" --nproc_per_node 1 -m bench.train_py_recipe "${TRAIN32_ARGS[@]}"
  measure train32_2gpu_ddp 150 "$G01" "${TORCHRUN[@]}" --nproc_per_node 2 -m bench.train_py_recipe --distributed ddp "${TRAIN32_ARGS[@]}"
  measure train32_2gpu_fsdp 150 "$G01" "${TORCHRUN[@]}" --nproc_per_node 2 -m bench.train_py_recipe --distributed fsdp "${TRAIN32_ARGS[@]}"
fi
measure search_2gpu 90 "$G01" "${SEARCH2[@]}"
measure create_index_1v2 150 "$G01" "${CI[@]}"

# ---- collect: the jsonl, the summary, the logs
ORDER="embedding_cold embedding_warm wrappers_1gpu search_1gpu camml_7b generation train_1gpu train_2gpu_ddp train_2gpu_fsdp train_2gpu_fsdp_shard train32_1gpu train32_2gpu_ddp train32_2gpu_fsdp search_2gpu create_index_1v2"
: > "$OUT/perf_multi.jsonl"
for name in $ORDER; do
  [ -f "$RESULTS/$name.json" ] && cat "$RESULTS/$name.json" >> "$OUT/perf_multi.jsonl"
done
"$PY" - "$OUT/perf_multi.jsonl" "$(( $(date +%s) - T0 ))" > "$OUT/perf_multi_summary.txt" <<'EOF'
import json, sys
rows = {r["name"]: r for r in map(json.loads, open(sys.argv[1]))}
def get(name, *keys):
    value = (rows.get(name) or {}).get("result")
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
lines = [f"total wall seconds: {sys.argv[2]}"]
for name, row in rows.items():
    lines.append(f"{name}: rc={row['rc']} {row['seconds']}s" + (" TIMED OUT" if row.get("timed_out") else "")
                 + ("" if row.get("result") else " (no JSON line)"))
lines.append(f"embedding: cold overlapped {get('embedding_cold', 'cold_images_per_s')} img/s "
             f"(pass {get('embedding_cold', 'cold_pass_images_per_s')}), cold serial {get('embedding_cold', 'cold_serial_images_per_s')} "
             f"(pass {get('embedding_cold', 'cold_serial_pass_images_per_s')}), best {get('embedding_cold', 'cold_best_decode')}; "
             f"warm e2e {get('embedding_warm', 'images_per_s')} (steady {get('embedding_warm', 'steady_images_per_s')}), "
             f"model only {get('embedding_warm', 'model_only_images_per_s')} (eager {get('embedding_warm', 'model_only_eager_images_per_s')})")
for name in ("search_1gpu", "search_2gpu"):
    lines.append(f"{name}: {get(name, 'queries_per_s')} q/s, recall@10 vs fp32 {get(name, 'recall_vs_exact_fp32')}, "
                 f"sets {json.dumps({k: v.get('queries_per_s') for k, v in (get(name, 'device_sets') or {}).items()})}")
for prefix in ("train", "train32"):
    one = get(f"{prefix}_1gpu", "tokens_per_s")
    for name in (f"{prefix}_1gpu", f"{prefix}_2gpu_ddp", f"{prefix}_2gpu_fsdp", f"{prefix}_2gpu_fsdp_shard"):
        if name not in rows:
            continue
        tps = get(name, "tokens_per_s")
        ratio = f" = {tps / one:.3f}x one GPU" if tps and one else ""
        lines.append(f"{name}: {tps} tokens/s{ratio}, step {get(name, 'step_ms')} ms, fsdp_frozen {get(name, 'fsdp_frozen')}")
wrappers = get("wrappers_1gpu", "strategies") or {}
lines.append("wrappers on 1 GPU (step ms, host syncs): " + json.dumps(
    {k: (v.get("step_ms_mean"), v.get("host_syncs"), v.get("error")) for k, v in wrappers.items()}))
runs = get("create_index_1v2", "runs") or {}
lines.append("create_index: " + json.dumps({k: {x: v.get(x) for x in ("images_per_s", "embed_images_per_s", "speedup_vs_1",
             "embed_speedup_vs_1", "vectors_equal", "error")} for k, v in runs.items()}))
lines.append(f"camml: step ratio 3 shots / none {get('camml_7b', 'step_ratio_camml_vs_no_context')}")
systems = get("generation", "systems") or {}
lines.append("generation items/s: " + json.dumps({k: v.get("items_per_s") for k, v in systems.items()}))
print("\n".join(lines))
EOF
cat "$OUT/perf_multi_summary.txt"
tar -czf "$OUT/perf_multi_logs.tar.gz" -C "$LOGS" . 2>/dev/null
rm -rf "$LOGS"
exit 0
