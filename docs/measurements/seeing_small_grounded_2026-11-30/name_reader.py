"""Zero-LM reader of the visual tokens (issue 12, grounding loss): a presence question "Is there a <name>
in the image?" is answered "yes" when some cell's distribution over the 247 names' first ids (the cell's
projected token dotted with each id's INPUT embedding, softmax over those ids) gives the asked name's first
id at least a threshold; the threshold is the best on the first 1,500 training presence questions
(llava/yesno_balanced_train.json); scored on val (pope_val/all.jsonl). Prints one JSON line; with READER_ANSWERS=file, writes each val answer there.
  PYTHONPATH=. python docs/measurements/seeing_small_grounded_2026-11-30/name_reader.py CHECKPOINT_DIR [model.key=value ...]
"""
import json
import os
import re
import sys

import torch

from mmrag.common.config import build_config
from mmrag.common.registry import TASKS
from mmrag.datasets.formats import read_coco_instances
from mmrag.processors.grounding import name_token_ids
from mmrag.processors.image_processing import pixel_key

W = "dataset/world_small"
Q = re.compile(r"Is there (?:a|an) (.+?) in the image\?")


def main(checkpoint, keys):
    cfg = build_config("eval_configs/seeing_small_pope.yaml", [f"model.checkpoint={checkpoint}", *keys])
    task = TASKS.get(cfg.run.task)(cfg)
    model = task.build_model(cfg).eval()
    proc = task.build_processor(cfg, model)
    cats = read_coco_instances(f"{W}/annotations/instances_train.json")["categories"]
    first = {c["name"]: name_token_ids(proc.tokenizer, c["name"], "first")[0] for c in cats}
    ids = sorted(set(first.values()))
    col = {t: i for i, t in enumerate(ids)}
    table = model.llm.get_input_embeddings().weight[ids].to(model.device)
    cache = {}

    def score(image, name):
        if image not in cache:
            p = proc.image_processor(f"{W}/images/{image}")
            with torch.no_grad():
                v = model.encode_images(p[None], image_keys=[pixel_key(p)])[0]
                cache[image] = (v @ table.t()).softmax(-1).cpu()   # [cells, names' first ids]
        return float(cache[image][:, col[first[name]]].max())

    train = json.load(open(f"{W}/llava/yesno_balanced_train.json"))[:1500]
    scored = [(score(x["image"].split("/")[-1], Q.search(x["conversations"][0]["value"]).group(1)),
               x["conversations"][1]["value"].lower().startswith("yes")) for x in train]
    train_acc, threshold = max((sum((s >= t) == y for s, y in scored) / len(scored), t) for t in sorted({s for s, _ in scored}))
    val = [json.loads(line) for line in open(f"{W}/pope_val/all.jsonl")]
    pred = [score(q["image"], Q.search(q["text"]).group(1)) >= threshold for q in val]
    acc = sum(p == (q["label"] == "yes") for p, q in zip(pred, val)) / len(val)
    if os.environ.get("READER_ANSWERS"):   # per question, in mmrag.pipelines.analysis.correct_by_question's form
        with open(os.environ["READER_ANSWERS"], "w") as f:
            for p, q in zip(pred, val):
                f.write(json.dumps({"question_id": q["question_id"], "prediction": "Yes." if p else "No.",
                                    "answer": q["label"], "correct": float(p == (q["label"] == "yes"))}) + "\n")
    print(json.dumps({"checkpoint": str(checkpoint), "distinct_first_ids": len(ids), "threshold": threshold,
                      "train_acc": round(100 * train_acc, 1), "val_acc": round(100 * acc, 1),
                      "val_yes_ratio": round(100 * sum(pred) / len(pred), 1)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
