"""What match_answer_bias reads in a RAG prompt of the small model that sees (issue 12, SURf on the small base).

The bias adds d = gain * (a * m + b) to the "Yes" logit minus the "No" logit (half each), with m the highest
name match of the turn: over every name (category of instances_train.json) whose whole token ids stand in
the turn's text up to the answer position, the highest probability that ANY visual token of the row gives
that name's first id (MultimodalLLM.match_table / turn_max). A RAG prompt holds three images (two retrieved,
the query last) and two captions in the same human turn, so m may come from a retrieved image and from a
name in a caption, not only from the query image and the asked name. This script rebuilds the exact RAG
prompts the pipeline's pope_base_rag stage answered (its answers_<split>.jsonl: prompt, images, system) and
the zero-shot prompts of pope_base_none, and computes m at the answer position four ways:

  m_model          every image, every name of the turn        (what the model adds at RAG inference)
  m_query_image    the query image's cells only, every name   (> m_zero: a caption names an object of the query image)
  m_question_name  every image, the question's name only      (> m_zero: a retrieved image shows the asked object)
  m_caption_names  every image, the captions' names only      (> m_zero: a caption names an object one of the images shows)
  m_zero           the zero-shot prompt's m (query image, question)  (what it adds without retrieval)

and d's shift of (yes - no) logits between RAG and zero-shot, gain * a * (m_model - m_zero), split by the
gold answer, with the share of answers that turn "yes" under RAG.

Counterfactual (the RAG prompts, the bias swapped): the LLM's own "Yes" minus "No" logit at the answer
position (one forward pass, no bias; position ids from the left padding as generate() makes them) plus
d(m) for each m above gives a yes / no decision; its accuracy with m_model should match the pipeline's RAG
row (checked: agreement with the recorded answers), with m_zero it is RAG with the bias read as without
retrieval, with a = 0 (d = gain * b) RAG without the match term.

    OMP_NUM_THREADS=2 nice -n 10 python docs/measurements/surf_seeing_small_2026-12-01/match_sources.py \
        --out-dir output/surf_seeing_small --json docs/measurements/surf_seeing_small_2026-12-01/match_sources.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import mmrag  # noqa: F401  (registers the model class)
from mmrag.common.config import build_config
from mmrag.common.registry import MODELS
from mmrag.processors import build_processor
from mmrag.processors.tokenization import IMAGE_PLACEHOLDER_ID
from mmrag.surf.model_answerer import ModelAnswerer, template_system, with_system

HIDDEN = IMAGE_PLACEHOLDER_ID - 7919  # a negative id no placeholder uses: neither read as an image nor as text


def load_model(cfg_path: str, checkpoint: str):
    cfg = build_config(cfg_path, [f"model.checkpoint={checkpoint}"])
    model = MODELS.get(cfg.model.arch)(cfg.model).eval()
    return model, build_processor(cfg.model, model), cfg


def answer_m(model, batch, ids, mask):
    embeds = model.embed(batch["input_ids"], batch["pixel_values"], batch.get("regions"), batch.get("context"),
                         batch.get("image_keys"))
    return embeds, model.turn_max(model.match_table(embeds, ids), ids, mask)[:, -1]


def yes_minus_no(model, embeds, mask):
    """[batch]: the LLM's "Yes" minus "No" logit at the last prompt position, without the match term."""
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
    logits = model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1].float()
    sign = model.answer_sign
    return logits[:, sign > 0].squeeze(1) - logits[:, sign < 0].squeeze(1)


@torch.no_grad()
def m_of_rows(model, answerer, rows, template, rag: bool):
    """{variant: [m per row]} at the answer position (the last prompt token; prompts are left-padded)."""
    out = ({"m_model": [], "m_query_image": [], "m_question_name": [], "m_caption_names": [], "llm_margin": []} if rag
           else {"m_zero": []})
    cells = model.num_visual_tokens
    for start in range(0, len(rows), 64):
        chunk = rows[start:start + 64]
        samples = [answerer._sample({"prompt": r["prompt"], "images": r["images"]}, i) for i, r in enumerate(chunk)]
        batch = answerer.processor.collate(samples, generation=True, template=template)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        embeds, m = answer_m(model, batch, ids, mask)
        if not rag:
            out["m_zero"] += m.tolist()
            continue
        out["m_model"] += m.tolist()
        out["llm_margin"] += yes_minus_no(model, embeds, mask).tolist()
        query_only, question_only, caption_only = ids.clone(), mask.clone(), mask.clone()
        for b in range(ids.shape[0]):
            where = (ids[b] == IMAGE_PLACEHOLDER_ID).nonzero().squeeze(1)
            query_only[b, where[:-cells]] = HIDDEN        # the retrieved images' cells leave the match table
            question_only[b, : int(where[-1]) + 1] = 0    # names before the query image (captions) are not read
            caption_only[b, int(where[-1]) + 1:] = 0      # the question's name is not read
        out["m_query_image"] += model.turn_max(model.match_table(embeds, query_only), query_only, mask)[:, -1].tolist()
        full_table = model.match_table(embeds, ids)
        out["m_question_name"] += model.turn_max(full_table, ids, question_only)[:, -1].tolist()
        out["m_caption_names"] += model.turn_max(full_table, ids, caption_only)[:, -1].tolist()
    return out


def read_rows(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_yes(prediction: str) -> bool:
    return prediction.strip().lower().startswith("yes")


def summarise(rag_rows, zero_rows, m, shift_per_m: float, threshold: float):
    """Per gold answer: mean m's, the share where RAG's m rises by > threshold over zero-shot's, the mean
    logit shift, and the yes-rates of zero-shot and RAG over all and over the risen questions."""
    zero_by_id = {r["question_id"]: r for r in zero_rows}
    result = {}
    for gold in ("yes", "no"):
        idx = [i for i, r in enumerate(rag_rows) if r["answer"] == gold]
        rose = [i for i in idx if m["m_model"][i] - m["m_zero"][i] > threshold]
        share = lambda ms, sel: round(sum(ms[i] - m["m_zero"][i] > threshold for i in sel) / max(1, len(sel)), 4)  # noqa: E731
        mean = lambda key, sel: round(sum(m[key][i] for i in sel) / max(1, len(sel)), 4)  # noqa: E731
        yes_rate = lambda rows, sel: round(sum(is_yes(rows[i]["prediction"]) for i in sel) / max(1, len(sel)), 4)  # noqa: E731
        zero_aligned = [zero_by_id[r["question_id"]] for r in rag_rows]
        result[gold] = {
            "n": len(idx), **{f"mean_{k}": mean(k, idx) for k in m if k.startswith("m_")},
            "share_m_rises": round(len(rose) / max(1, len(idx)), 4),
            # each alone enough for the rise (both may hold for one question)
            "share_retrieved_image_shows_asked_name": share(m["m_question_name"], idx),
            "share_caption_name_in_query_image": share(m["m_query_image"], idx),
            "share_caption_name_in_some_image": share(m["m_caption_names"], idx),
            "mean_logit_shift_yes_minus_no": round(shift_per_m * (mean("m_model", idx) - mean("m_zero", idx)), 3),
            "yes_rate_zero_shot": yes_rate(zero_aligned, idx), "yes_rate_rag": yes_rate(rag_rows, idx),
            "n_risen": len(rose), "yes_rate_zero_shot_risen": yes_rate(zero_aligned, rose),
            "yes_rate_rag_risen": yes_rate(rag_rows, rose),
        }
    return result


def counterfactual(rag_rows, m, gain: float, a: float, b: float):
    """Accuracy of the yes / no decision llm_margin + d(m) > 0 with each m (and with a = 0), and how often
    the decision with the model's own m agrees with the recorded RAG answer."""
    gold = [r["answer"] == "yes" for r in rag_rows]
    margin = m["llm_margin"]
    decide = lambda d: [x + y > 0 for x, y in zip(margin, d)]  # noqa: E731
    accuracy = lambda said: round(sum(s == g for s, g in zip(said, gold)) / len(gold), 4)  # noqa: E731
    result = {key: accuracy(decide([gain * (a * v + b) for v in m[key]]))
              for key in ("m_model", "m_zero", "m_query_image", "m_question_name")}
    result["no_match_term"] = accuracy(decide([gain * b] * len(gold)))
    own = decide([gain * (a * v + b) for v in m["m_model"]])
    result["agreement_m_model_with_recorded_rag"] = round(
        sum(s == is_yes(r["prediction"]) for s, r in zip(own, rag_rows)) / len(gold), 4)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="output/surf_seeing_small")
    ap.add_argument("--cfg", default="eval_configs/surf_seeing_small_pope.yaml")
    ap.add_argument("--checkpoint", default="output/seeing_small_grounded/stage2_grounded/final")
    ap.add_argument("--splits", nargs="*", default=["random", "popular", "adversarial"])
    ap.add_argument("--threshold", type=float, default=0.5, help="a rise of m counted as one (m is a probability)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    model, processor, cfg = load_model(args.cfg, args.checkpoint)
    answerer = ModelAnswerer(model, processor)
    rag_template = with_system(processor.template, template_system(cfg.evaluation.retrieval.template))
    a, b = (float(x) for x in model.answer_bias.detach())
    report = {"gain": model.answer_gain, "a": a, "b": b, "threshold": args.threshold, "splits": {}}
    for split in args.splits:
        rag_rows = read_rows(Path(args.out_dir) / "pope_base_rag" / f"answers_{split}.jsonl")
        zero_rows = read_rows(Path(args.out_dir) / "pope_base_none" / f"answers_{split}.jsonl")
        zero_by_id = {r["question_id"]: r for r in zero_rows}
        m = m_of_rows(model, answerer, rag_rows, rag_template, rag=True)
        m.update(m_of_rows(model, answerer, [zero_by_id[r["question_id"]] for r in rag_rows], processor.template, rag=False))
        report["splits"][split] = summarise(rag_rows, zero_rows, m, model.answer_gain * a, args.threshold)
        report["splits"][split]["rag_accuracy_with_bias_from"] = counterfactual(rag_rows, m, model.answer_gain, a, b)
        print(split, json.dumps(report["splits"][split]), flush=True)
    Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
