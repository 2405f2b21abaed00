"""Throw-away: val POPE with the yes/no logit margin at the first answer token recorded; prints AUC."""
import json, sys
from pathlib import Path
import torch
from transformers import AutoTokenizer
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.cli.eval import main as eval_main

tok = AutoTokenizer.from_pretrained("assets/smollm2-135m-instruct")  # run from the repository root
YES, NO = tok.encode("Yes", add_special_tokens=False)[0], tok.encode("No", add_special_tokens=False)[0]
margins = []
orig = MultimodalLLM.generate

@torch.no_grad()
def gen(self, batch, **kw):
    embeds = self.embed(batch["input_ids"], batch["pixel_values"], batch.get("regions"), batch.get("context"), batch.get("image_keys"))
    mask = batch["attention_mask"]
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=False)
    last = out.logits[:, -1].float()
    margins.extend((last[:, YES] - last[:, NO]).tolist())
    return orig(self, batch, **kw)

MultimodalLLM.generate = gen
out_dir = sys.argv[1]
eval_main(sys.argv[2:] + [f"run.output_dir={out_dir}"])
rows = [json.loads(l) for l in open(Path(out_dir) / "answers_all.jsonl")]
assert len(rows) == len(margins), (len(rows), len(margins))
pos = [m for m, r in zip(margins, rows) if r["answer"] == "yes"]
neg = [m for m, r in zip(margins, rows) if r["answer"] == "no"]
auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
res = {"auc_yes_minus_no": auc, "n": len(rows), "mean_margin_yes": sum(pos) / len(pos), "mean_margin_no": sum(neg) / len(neg)}
json.dump(res, open(Path(out_dir) / "margin_auc.json", "w"))
print("MARGIN", json.dumps(res))
