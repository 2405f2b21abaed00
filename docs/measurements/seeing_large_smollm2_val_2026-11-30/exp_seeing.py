"""Seeing-model val experiments (lead, issue 12): train variants in parallel, evaluate on val."""
import json, subprocess, sys, time, os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OUT = Path(sys.argv[1]); OUT.mkdir(parents=True, exist_ok=True)
STEPS = int(sys.argv[2]); ONLY = sys.argv[3].split(",") if len(sys.argv) > 3 else None
S2 = "train_configs/seeing_small_stage2_instruct.yaml"
EV = "eval_configs/seeing_small_pope.yaml"
W = "dataset/world_small"
def ds(name, file, ratio):
    return [f"datasets.{name}.builder=llava_instruct", f"datasets.{name}.data_path={W}/llava/{file}_{{split}}.json",
            f"datasets.{name}.image_root={W}", f"datasets.{name}.sample_ratio={ratio}"]
SMALL = ["model.llm.config.hidden_size=128", "model.llm.config.intermediate_size=256", "model.llm.config.num_hidden_layers=2"]
TIED = ["model.llm.config.tie_word_embeddings=true"]
VARIANTS = {
  "A_direct":  (["datasets.yesno_balanced.sample_ratio=0.8"], False),
  "B_list_direct": (ds("objects", "objects", 0.3) + ["datasets.yesno_balanced.sample_ratio=0.5"], False),
  "C_listed": (ds("objects", "objects", 0.25) + ds("listed", "yesno_listed", 0.4) + ["datasets.yesno_balanced.sample_ratio=0.15"], True),
  "D_listed_small": (ds("objects", "objects", 0.25) + ds("listed", "yesno_listed", 0.4) + ["datasets.yesno_balanced.sample_ratio=0.15"] + SMALL, True),
  "E_listed_tied": (ds("objects", "objects", 0.25) + ds("listed", "yesno_listed", 0.4) + ["datasets.yesno_balanced.sample_ratio=0.15"] + TIED, True),
  "F_list_direct_tied": (ds("objects", "objects", 0.3) + ["datasets.yesno_balanced.sample_ratio=0.5"] + TIED, False),
}
COMMON = ["model.checkpoint=null", f"run.max_steps={STEPS}", "run.batch_size=32", "run.log_every=100",
          "run.progress=false", "model.vision_tower.feature_cache=output/exp_cache"]
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
def sh(cmd, log):
    t = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV)
    return rc, round(time.time() - t, 1)
def variant(name):
    extra, listed = VARIANTS[name]
    d = OUT / name; d.mkdir(exist_ok=True)
    rep = {}
    rc, t = sh([sys.executable, "train.py", "--cfg-path", S2, f"run.output_dir={d}/train", *COMMON, *extra], d / "train.log")
    rep["train"] = [rc, t]
    if rc: return name, rep
    model_keys = [x for x in extra if x.startswith("model.")]
    evals = [("none", None), ("shuffled", None)] + ([("none", "describe"), ("shuffled", "describe")] if listed else [])
    for control, mode in evals:
        tag = f"{control}_{mode or 'direct'}"
        opts = [f"run.output_dir={d}/{tag}", f"model.checkpoint={d}/train/final", f"evaluation.image_control={control}",
                "evaluation.question_file=output/exp_val/{split}.jsonl", "evaluation.splits=[all,random,popular,adversarial]",
                "model.vision_tower.feature_cache=output/exp_cache", *model_keys]
        if mode: opts.append("evaluation.describe_first=List the objects in the image.")
        rc, t = sh([sys.executable, "eval.py", "--cfg-path", EV, *opts], d / f"{tag}.log")
        res = json.load(open(d / tag / "results.json")) if rc == 0 else None
        rep[tag] = [rc, t, {k: {m: round(100 * v[m], 1) for m in ("accuracy", "yes_ratio") if m in v} for k, v in (res or {}).items()}]
    return name, rep
names = ONLY or list(VARIANTS)
# fill the feature cache once before the parallel runs
t = time.time()
from mmrag.pipelines.seeing import cache_features
cache_features(Path("."), S2, ["model.vision_tower.feature_cache=output/exp_cache"], f"{W}/images", OUT / "features_done.json", 256)
print("features", round(time.time() - t, 1), flush=True)
with ThreadPoolExecutor(len(names)) as pool:
    for name, rep in pool.map(variant, names):
        print(name, json.dumps(rep), flush=True)
        (OUT / f"{name}.json").write_text(json.dumps(rep))
