"""The LLM generator of LRV instructions: a chat backend is shown an image's dense region captions with
boxes (LRV's "caption X: Y: Width: Height:" layout) and the facts of the named things in it, and asked
for positive instructions and misleading (false-premise) ones; the reply is parsed robustly.

Backends: `mmrag.models.text_generator.build_chat_backend` ({type: local, path: assets/smollm2-135m-instruct}
or {type: openai, url, model, api_key_env, ...}). The generator writes the train split only; val and
test stay with the world oracle (lrv_instructions.generate_items), so evaluation is always checkable.

Parsing: items are blocks with `Task:`, `Instruction:` (or `Question:`) and `Answer:` lines, in any
case, with or without numbering, bullets or ** emphasis, blank lines optional (a new `Task:` or
`Instruction:` line starts a block). Kept: blocks with both an instruction and an answer whose answer
is under 30 words and names no coordinates; a block marked negative must reject its premise and a
positive one must not (`mmrag.metrics.hallucination.rejects_premise`). Everything dropped is counted
by cause in `report` (failed replies, blocks without an answer, long answers, coordinates, wrong
polarity, repeats), so a weak generator is visible, never silent.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mmrag.datasets.lrv_formats import read_vg_region_descriptions, region_line
from mmrag.datasets.world.language import object_phrase, with_article
from mmrag.datasets.world.lrv_instructions import MAX_ANSWER_WORDS, GraphScene, Item, fact_claim
from mmrag.metrics.hallucination import rejects_premise

SYSTEM_PROMPT = ("You write training data for a vision-language assistant. You cannot see the picture: you get "
                 "its region captions, each with its box, and facts about the named things in it. Use nothing else.")
REQUEST = """Picture of {width}x{height} pixels. Regions, one per line (caption X: Y: Width: Height:, in pixels):
{regions}
Facts about the things in the picture:
{facts}

Part 1. Write {n_positive} instructions a user could give about this picture, each with a correct answer. Use different tasks (description, existence, counting, attribute, relation, knowledge), at most {per_task} per task.
Part 2. Write {n_negative} misleading instructions whose premise is false for this picture: an object, a colour or a left/right relation that is not there, a wrong colour or shape for an object that is there, or a wrong fact about a named thing. Write half of them as questions and half as requests. Each answer must say that the premise is false and why.
Every answer has fewer than 30 words and never mentions coordinates.
Write each item as three lines and leave a blank line between items:
Task: <task name; write negative for the misleading ones>
Instruction: <the instruction>
Answer: <the answer>"""
_FIELD = re.compile(r"^\s*(?:[-*\d.)\s]*)\**\s*(task|instruction|question|answer)\s*\**\s*:\s*\**\s*(.*?)\s*\**\s*$",
                    re.IGNORECASE)
_COORDINATES = re.compile(r"\b(?:X|Y|Width|Height)\s*:|\b\d+\s*(?:px|pixels)\b|\(\s*\d+\s*,\s*\d+", re.IGNORECASE)
TASK_ALIASES = {"question": "instruction"}


def facts_lines(graph: GraphScene) -> str:
    lines = []
    for obj in graph.scene.objects:
        if obj.entity is not None:
            facts = "; ".join(fact_claim(a, v) for a, v in sorted(obj.entity.facts.items()))
            lines.append(f"- the {object_phrase(obj)} is {with_article(obj.entity.name)}: it {facts}")
    return "\n".join(lines) or "- (no named things)"


def build_prompt(graph: GraphScene, regions: Sequence[Dict], n_positive: int, n_negative: int,
                 per_task: int) -> List[Dict[str, str]]:
    text = REQUEST.format(width=graph.size, height=graph.size, regions="\n".join(region_line(r) for r in regions),
                          facts=facts_lines(graph), n_positive=n_positive, n_negative=n_negative, per_task=per_task)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]


def parse_blocks(reply: str) -> List[Dict[str, str]]:
    """Blocks of {task?, instruction?, answer?} in reply order (see the module doc)."""
    blocks: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    last: Optional[str] = None
    for line in reply.splitlines():
        match = _FIELD.match(line)
        if match:
            key = TASK_ALIASES.get(match[1].lower(), match[1].lower())
            starts_new = key in current or (key == "task" and current) or (key == "instruction" and "answer" in current)
            if starts_new:
                blocks.append(current)
                current = {}
            current[key] = match[2].strip()
            last = key
        elif line.strip() and last in ("instruction", "answer") and current.get(last) is not None:
            current[last] = (current[last] + " " + line.strip()).strip()  # a field wrapped onto the next line
        elif not line.strip():
            last = None
    if current:
        blocks.append(current)
    return blocks


def check_block(block: Dict[str, str]) -> Tuple[Optional[Item], Optional[str]]:
    """(item, None) for a usable block, else (None, cause)."""
    question, answer = block.get("instruction", "").strip(), block.get("answer", "").strip()
    if not question or not answer:
        return None, "missing_instruction_or_answer"
    if len(answer.split()) > MAX_ANSWER_WORDS:
        return None, "answer_30_words_or_more"
    if _COORDINATES.search(answer):
        return None, "answer_names_coordinates"
    task = re.sub(r"[^a-z_ ]", "", block.get("task", "").lower()).strip().replace(" ", "_") or "unknown"
    negative = task.startswith("negative") or task.startswith("misleading")
    if negative != rejects_premise(answer):
        return None, "answer_polarity_mismatch"
    task = "negative_llm" if negative else task
    form = "interrogative" if question.rstrip().endswith("?") else "declarative"
    return {"task": task, "question": question, "answer": answer, "form": form, "keywords": [],
            "generator": "llm"}, None


class LlmGenerator:
    """`generate_all(graphs, seed)` through a ChatBackend; `report` counts what was kept and dropped."""

    name = "llm"

    def __init__(self, backend, world_dir: Path, entities: Sequence, n_positive: int = 10, n_negative: int = 6,
                 per_task: int = 3, max_tokens: int = 768, temperature: float = 0.0) -> None:
        self.backend, self.entities = backend, list(entities)
        self.regions = read_vg_region_descriptions(Path(world_dir) / "regions" / "region_descriptions.json")
        self.n_positive, self.n_negative, self.per_task = n_positive, n_negative, per_task
        self.max_tokens, self.temperature = max_tokens, temperature
        self.report: Dict[str, int] = {}
        self.failures: List[str] = []  # one line per failed reply, naming the image

    def generate_all(self, graphs: Sequence[GraphScene], seed: int) -> List[List[Item]]:
        prompts = [build_prompt(g, self.regions.get(g.image_id, []), self.n_positive, self.n_negative, self.per_task)
                   for g in graphs]
        results = self.backend.complete(prompts, max_tokens=self.max_tokens, temperature=self.temperature)
        counts: Counter = Counter()
        out: List[List[Item]] = []
        for graph, result in zip(graphs, results):
            if not result.ok:
                counts["llm_failed_replies"] += 1
                self.failures.append(f"image {graph.image_id}: {result.error}")
                out.append([])
                continue
            kept, seen = [], set()
            for block in parse_blocks(result.text):
                item, cause = check_block(block)
                if item is not None and item["question"].lower() in seen:
                    item, cause = None, "repeated_instruction"
                if item is None:
                    counts[f"llm_dropped_{cause}"] += 1
                    continue
                seen.add(item["question"].lower())
                kept.append(item)
            counts["llm_kept"] += len(kept)
            counts["llm_images_without_items"] += not kept
            out.append(kept)
        counts["llm_replies"] = len(graphs)
        self.report = dict(sorted(counts.items()))
        return out
