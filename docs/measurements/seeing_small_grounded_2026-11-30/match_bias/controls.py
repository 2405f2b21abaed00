"""The blank-image control and per-strategy figures of a run_variant.py run (issue 12, val only): runs
eval.py with evaluation.image_control=blank on pope_val/all (skipped when done), then for none / shuffled /
blank reads answers_all.jsonl and scores each pope_val strategy file (random / popular / adversarial, whose
union is all.jsonl) by the scorer's own `correct` of the same (image, question). Prints one JSON line.
  PYTHONPATH=. python docs/measurements/seeing_small_grounded_2026-11-30/match_bias/controls.py RUN_DIR [model.key=value ...]
"""
import json
import os
import subprocess
import sys
from pathlib import Path

W = "dataset/world_small"


def main(run, keys):
    run = Path(run)
    if not (run / "blank" / "results.json").is_file():
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        with open(run / "blank.log", "w") as log:
            subprocess.check_call(["nice", "-n", "10", sys.executable, "eval.py", "--cfg-path", "eval_configs/seeing_small_pope.yaml",
                                   f"run.output_dir={run}/blank", f"model.checkpoint={run}/train/final",
                                   "evaluation.image_control=blank", f"evaluation.question_file={W}/pope_val/{{split}}.jsonl",
                                   "evaluation.splits=[all]", "model.vision_tower.feature_cache=output/seeing_small/feature_cache",
                                   *keys], stdout=log, stderr=subprocess.STDOUT, env=env)
    out = {}
    for control in ("none", "shuffled", "blank"):
        answers = {(a["image"], a["question"]): a for a in map(json.loads, open(run / control / "answers_all.jsonl"))}
        row = {}
        for split in ("all", "random", "popular", "adversarial"):
            qs = [json.loads(line) for line in open(f"{W}/pope_val/{split}.jsonl")]
            correct = [answers[(q["image"], q["text"])]["correct"] == 1.0 for q in qs]
            said_yes = [c == (q["label"] == "yes") for c, q in zip(correct, qs)]
            row[split] = {"n": len(qs), "accuracy": round(100 * sum(correct) / len(qs), 1),
                          "yes_ratio": round(100 * sum(said_yes) / len(qs), 1)}
        out[control] = row
    print(json.dumps({"run": str(run), **out}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
