#!/usr/bin/env bash
# GeMKR's results table on the seeing base (issue 12, item 7), large setting, one H200, <= 8 min wall:
# SmolLM2-135M-Instruct + LoRA r=16 (q/k/v/o) on the world-trained CLIP tower (converted to a
# CLIPVisionModel so GeMKR's region prefix runs in its blocks); the corpus index tokenised with
# SmolLM2's tokenizer; the full model, the no-regions and no-prefix ablations (3 trainings at once,
# OMP_NUM_THREADS=2 each), then constrained / unconstrained GeMKR, BM25 and the dense dual encoder on
# the same first EVAL_N test questions (3 evaluations at once), with paired 95% bootstrap intervals.
# Everything goes through `mmrag-run-gemkr-seeing` (mmrag/pipelines/gemkr_seeing.py).
#
#   GPU=0 OUT=/path/to/out bash gpu/gemkr_seeing.sh       # on the GPU machine, from the repository root
#   SMOKE=1 OUT=/tmp/gs bash gpu/gemkr_seeing.sh           # CPU check of the logic on tiny stand-ins
#
# Needs (carried by the lead): assets/smollm2-135m-instruct; dataset/world_small/{corpus.csv, knowledge/,
# images/, annotations/}; and either index/world_small/clip_world_hf (2.5 MB, the converted tower) or
# output/clip_world_small/final (30 MB, the world CLIP) -- with neither, the world CLIP is trained here
# first (train_configs/clip_world_small.yaml on the GPU, minutes that come out of the training budget).
# Writes 2 files at $OUT top level: gemkr_seeing_report.json (report.json of the pipeline: every row's
# summary, the paired differences in both case modes; or, on a failure, what finished and the log tails)
# and gemkr_seeing_report.md (the tables, the stage times; on a failure the log tails).
# Env knobs: STEPS (400 training steps of 32, as the config), EVAL_N (500 test questions, the first in file order),
#   UNCONSTRAINED (1: also the unconstrained row), DEADLINE_S (470), JOBS (3).
set -u
OUT=${OUT:?set OUT to the output folder}
GPU=${GPU:-0}
SMOKE=${SMOKE:-0}
DEADLINE_S=${DEADLINE_S:-470}
JOBS=${JOBS:-3}
mkdir -p "$OUT"
REPO=$(pwd)
PY=${PYTHON:-python}
T0=$(date +%s)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false CUDA_VISIBLE_DEVICES=$GPU
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SMOKE" = 1 ]; then
  ROOT=$(mktemp -d /tmp/gemkr_seeing_smoke.XXXXXX)
  SET=$($PY -m tests.helpers.tiny_gemkr_seeing "$ROOT" | tail -n 1)   # stand-ins + their key=value budget
  STEPS=${STEPS:-2}; EVAL_N=${EVAL_N:-6}; CLIP_SET="run.device=cpu"; THREADS=1; WORKERS=0
else
  ROOT=$REPO
  SET=""
  STEPS=${STEPS:-400}; EVAL_N=${EVAL_N:-500}; CLIP_SET="run.device=cuda run.num_workers=8"; THREADS=2; WORKERS=8
fi
RUN=$ROOT/output/gemkr_seeing_large_run
LOG=$RUN.log
mkdir -p "$RUN"
UNC=""
[ "${UNCONSTRAINED:-1}" = 1 ] || UNC="--no-unconstrained"

missing=""
for p in assets/smollm2-135m-instruct/config.json dataset/world_small/corpus.csv dataset/world_small/knowledge/train.json \
         dataset/world_small/knowledge/test.json dataset/world_small/annotations/detections_train.json dataset/world_small/images; do
  [ -e "$ROOT/$p" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
  # shellcheck disable=SC2086  # SET / CLIP_SET are word lists of key=value
  (cd "$ROOT" && timeout --kill-after=15 "$DEADLINE_S" $PY -m mmrag.cli.run_gemkr_seeing --root "$ROOT" \
      --out "$RUN" --jobs "$JOBS" --threads "$THREADS" --region-workers "$WORKERS" $UNC \
      --clip-set $CLIP_SET --set $SET run.max_steps="$STEPS" evaluation.max_samples="$EVAL_N") > "$LOG" 2>&1
  RC=$?
else
  echo "missing inputs:$missing" > "$LOG"
  RC=2
fi
SECONDS_ALL=$(( $(date +%s) - T0 ))

if [ "$RC" = 0 ] && [ -f "$RUN/report.json" ]; then
  $PY - "$RUN/report.json" "$OUT/gemkr_seeing_report.json" "$SECONDS_ALL" "$STEPS" "$EVAL_N" <<'EOF'
import json, sys
from pathlib import Path
report = json.load(open(sys.argv[1]))
log = Path(sys.argv[1]).with_name("stages.jsonl")
stages = [json.loads(l) for l in log.read_text().splitlines()] if log.is_file() else []
report.update({"rc": 0, "wall_seconds": int(sys.argv[3]), "steps": int(sys.argv[4]), "eval_n": int(sys.argv[5]),
               "stages": [{k: s[k] for k in ("stage", "seconds")} for s in stages]})
json.dump(report, open(sys.argv[2], "w"), indent=1)
EOF
  { cat "$RUN/report.md"; echo; echo "Wall time of the script: ${SECONDS_ALL} s (steps $STEPS, $EVAL_N questions)."; } \
    > "$OUT/gemkr_seeing_report.md"
else
  # a failure or the deadline: what finished, and the tails of every log
  $PY - "$RUN" "$LOG" "$OUT/gemkr_seeing_report.json" "$RC" "$SECONDS_ALL" "$missing" <<'EOF'
import json, sys
from pathlib import Path
run, log, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
done = {p.parent.name: json.loads(p.read_text()) for p in sorted(run.glob("eval/*/retrieval_summary.json"))}
tails = {str(p.relative_to(run.parent)): p.read_text(errors="replace").splitlines()[-25:]
         for p in [log, *sorted(run.glob("*.log")), *sorted(run.glob("eval/*.log"))] if p.is_file()}
stages = [json.loads(l) for l in (run / "stages.jsonl").read_text().splitlines()] if (run / "stages.jsonl").is_file() else []
json.dump({"rc": int(sys.argv[4]), "wall_seconds": int(sys.argv[5]), "missing_inputs": sys.argv[6].split(),
           "finished_evaluations": done, "stages": [{k: s[k] for k in ("stage", "seconds")} for s in stages],
           "log_tails": tails}, open(out, "w"), indent=1)
EOF
  { echo "# gemkr_seeing: FAILED (rc $RC) after ${SECONDS_ALL} s"; [ -n "$missing" ] && echo "missing:$missing";
    for f in "$LOG" "$RUN"/*.log "$RUN"/eval/*.log; do [ -f "$f" ] && { echo; echo "## $f"; tail -n 25 "$f"; }; done
  } > "$OUT/gemkr_seeing_report.md" 2>/dev/null
fi
echo "gemkr_seeing: rc $RC, ${SECONDS_ALL} s; $OUT/gemkr_seeing_report.{json,md}"
[ "$SMOKE" = 1 ] && rm -rf "$ROOT"
exit 0
