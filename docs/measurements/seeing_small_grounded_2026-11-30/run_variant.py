"""Grounding-loss val experiments (issue 12 helper): one variant per call, stage 2 alone from a random LLM (width 128 x 2, batch 16, the naming mix), then val pope_val/all under none and shuffled images.
  python docs/measurements/seeing_small_grounded_2026-11-30/run_variant.py OUT NAME STEPS [key=value ...]
"""
import json, subprocess, sys, time, os
from pathlib import Path

OUT = Path(sys.argv[1]); NAME = sys.argv[2]; STEPS = int(sys.argv[3]); EXTRA = sys.argv[4:]
S2 = "train_configs/seeing_small_stage2_instruct.yaml"; EV = "eval_configs/seeing_small_pope.yaml"; W = "dataset/world_small"
def ds(name, file, ratio):
    return [f"datasets.{name}.builder=llava_instruct", f"datasets.{name}.data_path={W}/llava/{file}_{{split}}.json",
            f"datasets.{name}.image_root={W}", f"datasets.{name}.sample_ratio={ratio}"]
SMALL = ["model.llm.config.hidden_size=128", "model.llm.config.intermediate_size=256", "model.llm.config.num_hidden_layers=2"]
MIX = ds("objects", "objects", 0.25) + ds("listed", "yesno_listed", 0.4) + ["datasets.yesno_balanced.sample_ratio=0.15",
      "datasets.llava_instruct.sample_ratio=0.2"]
COMMON = ["model.checkpoint=null", f"run.max_steps={STEPS}", "run.batch_size=16", "run.log_every=50", "run.progress=false",
          "model.vision_tower.feature_cache=output/seeing_small/feature_cache"]
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
def sh(cmd, log):
    t = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(["nice", "-n", "10", *cmd], stdout=f, stderr=subprocess.STDOUT, env=ENV)
    return rc, round(time.time() - t, 1)
d = OUT / NAME; d.mkdir(parents=True, exist_ok=True)
rep = {"extra": EXTRA, "steps": STEPS}
if not (d / "train/final/trainable.safetensors").is_file():
    rc, t = sh([sys.executable, "train.py", "--cfg-path", S2, f"run.output_dir={d}/train", *COMMON, *SMALL, *MIX, *EXTRA], d / "train.log")
    rep["train"] = [rc, t]
    if rc: print(NAME, json.dumps(rep)); sys.exit(1)
model_keys = [x for x in SMALL + EXTRA if x.startswith("model.")]
for control in ("none", "shuffled"):
    opts = [f"run.output_dir={d}/{control}", f"model.checkpoint={d}/train/final", f"evaluation.image_control={control}",
            f"evaluation.question_file={W}/pope_val/{{split}}.jsonl", "evaluation.splits=[all]",
            "model.vision_tower.feature_cache=output/seeing_small/feature_cache", *model_keys]
    rc, t = sh([sys.executable, "eval.py", "--cfg-path", EV, *opts], d / f"{control}.log")
    res = json.load(open(d / control / "results.json")) if rc == 0 else None
    rep[control] = [rc, t, {k: {m: round(100 * v[m], 1) for m in ("accuracy", "yes_ratio") if m in v} for k, v in (res or {}).items()}]
print(NAME, json.dumps(rep), flush=True)
(d / "summary.json").write_text(json.dumps(rep))
