"""What the answer position's m holds (model.match_answer_bias, issue 12, val only): for each pope_val/all
question, m at the last prompt position (the highest name_match of the turn's text tokens), which token set
it, whether that token is the asked name's first id, and the learned a, b. The eval prompt exactly: the
model's template, "<image>\\n" + question, left-padded generation batch. Prints one JSON line.
  PYTHONPATH=. python docs/measurements/seeing_small_grounded_2026-11-30/match_bias/match_diag.py CHECKPOINT_DIR [model.key=value ...]
"""
import json
import re
import sys

import torch

from mmrag.common.config import build_config
from mmrag.common.registry import TASKS
from mmrag.processors.grounding import name_token_ids
from mmrag.processors.image_processing import pixel_key

W = "dataset/world_small"
Q = re.compile(r"Is there (?:a|an) (.+?) in the image\?")


def main(checkpoint, keys):
    cfg = build_config("eval_configs/seeing_small_pope.yaml", [f"model.checkpoint={checkpoint}", *keys])
    task = TASKS.get(cfg.run.task)(cfg)
    model = task.build_model(cfg).eval()
    proc = task.build_processor(cfg, model)
    val = [json.loads(line) for line in open(f"{W}/pope_val/all.jsonl")]
    rows = []
    for start in range(0, len(val), 64):
        chunk = val[start:start + 64]
        samples = []
        for q in chunk:
            p = proc.image_processor(f"{W}/images/{q['image']}")
            samples.append({"conversations": [{"from": "human", "value": f"<image>\n{q['text']}"}], "pixel_values": p[None],
                            "image_keys": [pixel_key(p)]})
        batch = proc.collate(samples, generation=True)
        keys_ = [s["image_keys"][0] for s in samples]
        with torch.no_grad():
            embeds = model.embed(batch["input_ids"], batch["pixel_values"], image_keys=keys_)
            match = model.name_match(embeds, batch["input_ids"]).float()
            match = match.masked_fill(~(batch["attention_mask"].bool() & (batch["input_ids"] >= 0)), 0)
            m = model.answer_match(embeds, batch["input_ids"], batch["attention_mask"])[:, -1]
        for i, q in enumerate(chunk):
            name_id = name_token_ids(proc.tokenizer, Q.search(q["text"]).group(1), "first")[0]
            at = int(match[i].argmax())
            name_pos = (batch["input_ids"][i] == name_id).nonzero()
            rows.append({"m": float(m[i]), "yes": q["label"] == "yes", "argmax_is_name": int(batch["input_ids"][i, at]) == name_id,
                         "argmax_token": proc.tokenizer.convert_ids_to_tokens(int(batch["input_ids"][i, at])),
                         "name_match": float(match[i, name_pos[-1, 0]]) if len(name_pos) else None})
    def best_acc(key):
        s = sorted((r[key] or 0.0, r["yes"]) for r in rows)
        n_yes = sum(y for _, y in s); best = n_yes  # threshold below everything: all yes
        yes_below = 0
        for i, (_, y) in enumerate(s):  # threshold just above s[i]: s[:i+1] answered no
            yes_below += y
            best = max(best, (i + 1 - yes_below) + (n_yes - yes_below))
        return round(100 * best / len(s), 1)
    from collections import Counter
    a, b = (float(x) for x in model.answer_bias) if model.answer_bias is not None else (None, None)
    print(json.dumps({"checkpoint": str(checkpoint), "a": a, "b": b, "n": len(rows),
                      "mean_m_yes": round(sum(r["m"] for r in rows if r["yes"]) / max(1, sum(r["yes"] for r in rows)), 4),
                      "mean_m_no": round(sum(r["m"] for r in rows if not r["yes"]) / max(1, sum(not r["yes"] for r in rows)), 4),
                      "argmax_is_name": round(100 * sum(r["argmax_is_name"] for r in rows) / len(rows), 1),
                      "top_argmax_tokens": Counter(r["argmax_token"] for r in rows).most_common(5),
                      "oracle_threshold_acc_m": best_acc("m"), "oracle_threshold_acc_name_match": best_acc("name_match")}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
