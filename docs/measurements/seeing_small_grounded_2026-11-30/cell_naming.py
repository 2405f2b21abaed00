"""Per covered cell of val images (held out) and as many training images: is the name with the highest input-embedding score among the names' first ids the cell's object? (A diagnostic of the grounding loss; val boxes read for scoring only, never trained on.)
  PYTHONPATH=. python docs/measurements/seeing_small_grounded_2026-11-30/cell_naming.py RUN_DIR (RUN_DIR/train/final)
"""
import json, sys
from pathlib import Path
import torch
from mmrag.common.config import build_config
from mmrag.common.registry import TASKS
from mmrag.datasets.builders import GroundingTargets
from mmrag.datasets.formats import read_coco_instances
from mmrag.processors.grounding import name_token_ids

d = Path(sys.argv[1]); extra = sys.argv[2:]
W = "dataset/world_small"
cfg = build_config("eval_configs/seeing_small_pope.yaml", [f"model.checkpoint={d}/train/final",
      "model.vision_tower.feature_cache=output/seeing_small/feature_cache", "model.llm.config.hidden_size=128",
      "model.llm.config.intermediate_size=256", "model.llm.config.num_hidden_layers=2", *extra])
task = TASKS.get(cfg.run.task)(cfg); model = task.build_model(cfg).eval(); proc = task.build_processor(cfg, model)
inst = read_coco_instances(f"{W}/annotations/instances_train.json")
gt = GroundingTargets(inst, "x", proc.tokenizer, 5, True, "first")
names = sorted({v[0] for v in gt.names.values()})
col = {t: i for i, t in enumerate(names)}
table = model.llm.get_input_embeddings().weight[names]
val = sorted({json.loads(l)["image"] for l in open(f"{W}/pope_val/all.jsonl")})
train = sorted({x["image"].split("/")[-1] for x in json.load(open(f"{W}/llava/objects_train.json"))})[:len(val)]
out = {}
for split, files in (("val", val), ("train", train)):
    hit = n = 0
    for i in range(0, len(files), 32):
        chunk = files[i:i + 32]
        pix = torch.stack([proc.image_processor(f"{W}/images/{f}") for f in chunk])
        with torch.no_grad():
            vis = model.encode_images(pix, image_keys=[__import__("mmrag.processors.image_processing", fromlist=["pixel_key"]).pixel_key(p) for p in pix])
        for f, v in zip(chunk, vis):
            t = gt.for_image(f)[:, 0]
            cov = t >= 0
            if cov.any():
                pred = (v[cov] @ table.t()).argmax(-1)
                gold = torch.tensor([col[int(x)] for x in t[cov]])
                hit += int((pred == gold).sum()); n += int(cov.sum())
    out[split] = {"cells": n, "top1_among_names": round(100 * hit / n, 1)}
print(d.name, json.dumps(out))
