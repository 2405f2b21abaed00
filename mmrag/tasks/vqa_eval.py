"""Evaluation of generated answers (`run.task: vqa_eval`): questions about images -> the model's
answers -> a registered scorer (`mmrag.metrics.scorers`: pope, exact_match, vqa_accuracy,
multiple_choice).

For each split in `evaluation.splits` the questions are read from `question_file` ("{split}" is
replaced) by the reader named in `format` (pope | llava_vqa | vqa_jsonl, see READERS), the images
are looked up under `image_root`, and the outputs are

    <output_dir>/answers_<split>.jsonl   question_id, image, question, prompt, images, prediction,
                                         answer, correct, retrieved
    <output_dir>/results.json            {split: the scorer's metrics}
    <output_dir>/results.png             bar chart of the scorer's headline metrics per split

`evaluation.retrieval.mode: rag` puts the nearest database images of the query image and their
captions before the question (SURf's RAG prompt, `mmrag.surf.prompts.build_rag_prompt`: retrieved
images first, the query image last) with the system prompt of `retrieval.template`; the database
is searched through the image-database Retriever (the query itself excluded). `none` asks about the
image alone.

`evaluation.image_control` replaces the query image, to measure how much an answer depends on it:
`blank` (a mid-grey image of the same size), `shuffled` (the evaluated questions' images permuted
among themselves: a seeded derangement of the distinct images, so every question shows another
question's image), `text_only` (the question with no image token and no image; not with rag).
Training with `run.task: vqa_eval` is plain instruction tuning on `datasets:`.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mmrag.common.errors import ConfigError, DataFormatError
from mmrag.common.jsonl import read_jsonl, write_json, write_jsonl
from mmrag.common.registry import SCORERS, TASKS
from mmrag.metrics import scorers  # noqa: F401  (registers the scorers)
from mmrag.retrievers.base import build_retriever
from mmrag.surf.model_answerer import ModelAnswerer, template_system
from mmrag.surf.prompts import IMAGE_TOKEN, RagConfig, build_rag_prompt, retrieved_item, strip_image_token
from mmrag.tasks.base import Task

RETRIEVAL_MODES = ("none", "rag")
IMAGE_CONTROLS = ("none", "blank", "shuffled", "text_only")
GREY = (128, 128, 128)

Item = Dict[str, Any]


# ----------------------------------------------------------------------------- readers
def read_pope(path: Path, ev) -> List[Item]:
    """POPE JSON lines {question_id, image, text, label} (validated by datasets.formats)."""
    from mmrag.datasets.formats import read_pope_jsonl

    return [{"question_id": r["question_id"], "image": r["image"], "question": r["text"], "answer": r["label"]}
            for r in read_pope_jsonl(path)]


def read_llava_vqa(path: Path, ev) -> List[Item]:
    """Single-turn short-answer / multiple-choice questions of the LLaVA records whose id ends with
    one of `evaluation.id_suffixes` (all records when empty), e.g. the world's test VQA items."""
    from mmrag.datasets.formats import read_llava_conversations
    from mmrag.surf.construct import split_turns

    suffixes = tuple(ev.id_suffixes or ())
    records = [r for r in read_llava_conversations(path) if not suffixes or str(r["id"]).endswith(suffixes)]
    if not records:
        raise DataFormatError(f"{path}: no record id ends with any of {list(suffixes)} (evaluation.id_suffixes)")
    return [{"question_id": q["qid"], "image": q["image"], "question": q["question"], "answer": q["answer"],
             "answer_type": q["answer_type"]} for q in split_turns(records) if q["answer_type"] in ("short", "mc")]


def read_vqa_jsonl(path: Path, ev) -> List[Item]:
    """JSON lines {question_id, image, question, answer? (str), answers? ([str]), options? ({letter:
    text})}: converted VQAv2 / SEED-Bench / MMBench questions."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file does not exist (evaluation.question_file)")
    items = read_jsonl(path, DataFormatError)
    for n, row in enumerate(items, start=1):
        missing = [key for key in ("question_id", "image", "question") if key not in row]
        if missing or not ("answer" in row or "answers" in row):
            raise DataFormatError(f"{path}: line {n}: expected question_id, image, question and answer or answers "
                                  f"(missing {missing or ['answer']})")
        row.setdefault("answer_type", "short")
    return items


READERS = {"pope": read_pope, "llava_vqa": read_llava_vqa, "vqa_jsonl": read_vqa_jsonl}


# ----------------------------------------------------------------------------- image controls
def blank_image(path: str, folder: Path) -> str:
    """A mid-grey PNG of the size of the image at `path` (one file per size, under `folder`)."""
    from PIL import Image

    with Image.open(path) as image:
        size = image.size
    out = folder / f"blank_{size[0]}x{size[1]}.png"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.png")
        Image.new("RGB", size, GREY).save(tmp)
        os.replace(tmp, out)
    return str(out)


def derangement(items: Sequence[str], seed: int) -> Dict[str, str]:
    """item -> another item: a seeded random cyclic permutation (Sattolo), so none maps to itself."""
    if len(items) < 2:
        raise ConfigError(f"evaluation.image_control=shuffled: needs at least 2 distinct images, got {len(items)}")
    order, rng = list(range(len(items))), random.Random(seed)
    for i in range(len(items) - 1, 0, -1):
        j = rng.randrange(i)
        order[i], order[j] = order[j], order[i]
    return {items[i]: items[order[i]] for i in range(len(items))}


def control_images(images: Sequence[str], control: str, seed: int, folder: Path) -> List[Optional[str]]:
    """The image each question is asked about under `control` (None: no image)."""
    if control == "none":
        return list(images)
    if control == "text_only":
        return [None] * len(images)
    if control == "blank":
        return [blank_image(p, folder) for p in images]
    mapping = derangement(sorted(set(images)), seed)
    return [mapping[p] for p in images]


# ----------------------------------------------------------------------------- requests
class RequestBuilder:
    """(question, image or None) -> an answer request: plain, with the SURf RAG prompt, or text only."""

    def __init__(self, retrieval_cfg, retriever=None) -> None:
        """`retriever`: the image database as a Retriever already built (default: built from `retrieval_cfg`)."""
        self.rag = retrieval_cfg.mode == "rag"
        self.retriever = (retriever or build_retriever("image_database", retrieval_cfg)) if self.rag else None
        self.k = int(retrieval_cfg.k)
        self.rag_cfg = RagConfig(k=self.k, threshold=retrieval_cfg.threshold)
        self.system = template_system(retrieval_cfg.template) if self.rag else None

    def build(self, questions: Sequence[str], images: Sequence[Optional[str]]) -> List[Dict[str, Any]]:
        if not self.rag:
            return [{"prompt": strip_image_token(q), "images": []} if img is None else
                    {"prompt": f"{IMAGE_TOKEN}\n{strip_image_token(q)}", "images": [img]}
                    for q, img in zip(questions, images)]
        hits = self.retriever.retrieve(list(images), self.k, exclude="self")
        requests = []
        for question, image, found in zip(questions, images, hits):
            rag = build_rag_prompt(question, image, [retrieved_item(h) for h in found], self.rag_cfg)
            requests.append({"prompt": rag.prompt, "images": rag.images, "system": self.system,
                             "retrieved": [{"id": r["id"], "score": round(r["score"], 4)} for r in rag.retrieved]})
        return requests


# ----------------------------------------------------------------------------- report
def plot_results(results: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], path: Path, title: str) -> None:
    """Grouped bars: one group per split, one bar per metric (in %)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the training machines
    import matplotlib.pyplot as plt

    splits = list(results)
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(splits), 3.2))
    for m, name in enumerate(metrics):
        xs = [s + (m - (len(metrics) - 1) / 2) * width for s in range(len(splits))]
        ax.bar(xs, [100 * results[s][name] for s in splits], width, label=name)
    ax.set_xticks(range(len(splits)), splits)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)




# ----------------------------------------------------------------------------- the task
@TASKS.register("vqa_eval")
class VqaEvalTask(Task):
    DEFAULTS = {
        "run": {},
        "evaluation": {
            "format": "pope",          # pope | llava_vqa | vqa_jsonl: the reader of question_file
            "question_file": None,     # required; "{split}" -> each of `splits`
            "image_root": None,        # required; the questions' image paths are relative to it
            "splits": ["test"],
            "id_suffixes": [],         # llava_vqa: only records whose id ends with one of these (empty: all)
            "scorer": "pope",          # pope | exact_match | vqa_accuracy | multiple_choice (SCORERS)
            "prompt_suffix": "",       # appended to each question
            "max_samples": None,       # first questions per split (null: all)
            "batch_size": 32,
            "max_new_tokens": 8,
            "image_control": "none",   # none | blank | shuffled | text_only
            "seed": 0,                 # of the shuffled control's derangement
            "describe_first": None,    # e.g. "List the objects in the image.": asked first, its answer kept in the conversation
            "describe_max_new_tokens": 48,
            "retrieval": {
                "mode": "none",                       # none | rag
                "database": None,                     # DenseIndex folder (mmrag-create-index)
                "k": 2,                               # retrieved items in the prompt
                "threshold": None,                    # lowest cosine allowed in the prompt
                "template": "vicuna_v1_retrieval",    # whose system prompt RAG requests use
                "embedder": {},                       # overrides of the database's embedder config
            },
        },
    }
    CHOICES = {"format": tuple(READERS), "image_control": IMAGE_CONTROLS, "retrieval.mode": RETRIEVAL_MODES}

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        ev, out_dir = cfg.evaluation, Path(out_dir)
        check_evaluation(ev)
        scorer = SCORERS.get(ev.scorer)()
        builder = RequestBuilder(ev.retrieval)
        answerer = ModelAnswerer(model, self.build_processor(cfg, model), ev.batch_size, ev.max_new_tokens,
                                 progress=True)
        results: Dict[str, Any] = {}
        for split in ev.splits:
            results[split] = evaluate_split(split, ev, builder, answerer, scorer, out_dir)
        write_json(out_dir / "results.json", results)
        title = f"{ev.scorer} (retrieval {ev.retrieval.mode}, image {ev.image_control})"
        plot_results(results, scorer.chart, out_dir / "results.png", title)
        return results


def check_evaluation(ev) -> None:
    """Allowed values and required paths of the `evaluation:` section, each error naming its key."""
    for key, allowed in VqaEvalTask.CHOICES.items():
        value = ev.retrieval.mode if key == "retrieval.mode" else ev[key]
        if value not in allowed:
            raise ConfigError(f"evaluation.{key}: expected one of {', '.join(allowed)}, got {value!r}")
    if ev.scorer not in SCORERS:
        SCORERS.get(ev.scorer)  # raises UnknownNameError naming the known scorers
    for key in ("question_file", "image_root"):
        if not ev[key]:
            raise ConfigError(f"evaluation.{key}: required by vqa_eval (the eval config names its data)")
    if ev.image_control == "text_only" and ev.retrieval.mode == "rag":
        raise ConfigError("evaluation.image_control=text_only: there is no query image to retrieve for; "
                          "use evaluation.retrieval.mode=none")


def describe_first(requests: List[Dict[str, Any]], instruction: str, answerer, max_new_tokens: int) -> List[Dict[str, Any]]:
    """Two turns per question: the model first answers `instruction` about the same images (e.g. lists
    the objects it sees), then gets the question with its own description in the conversation. Each
    distinct (prompt images) set is described once. Only single-turn `prompt` requests are rewritten;
    a request without images (text_only) is left as it is: there is nothing to describe."""
    if any("system" in r for r in requests):
        raise ConfigError("evaluation.describe_first: not with retrieval.mode=rag (one image per question only)")
    keyed = {tuple(r["images"]): r for r in requests if r["images"]}
    keys = sorted(keyed)
    asked = [{"prompt": IMAGE_TOKEN * len(k) + "\n" + instruction, "images": list(k)} for k in keys]
    descriptions = dict(zip(keys, answerer.answer(asked, max_new_tokens=max_new_tokens)))
    out = []
    for r in requests:
        if not r["images"]:
            out.append(r)
            continue
        description = descriptions[tuple(r["images"])]
        question = r["prompt"].split("\n", 1)[1] if r["prompt"].startswith(IMAGE_TOKEN) else r["prompt"]
        conversation = [{"from": "human", "value": IMAGE_TOKEN * len(r["images"]) + "\n" + instruction},
                        {"from": "gpt", "value": description}, {"from": "human", "value": question}]
        out.append({**r, "conversation": conversation, "description": description})
    return out


def evaluate_split(split: str, ev, builder: RequestBuilder, answerer, scorer, out_dir: Path) -> Dict[str, Any]:
    """Answer and score one split; write answers_<split>.jsonl; return the split's metrics."""
    items = READERS[ev.format](Path(str(ev.question_file).format(split=split)), ev)[: ev.max_samples or None]
    if not items:
        raise DataFormatError(f"{ev.question_file} (split {split}): no questions to evaluate")
    images = control_images([str(Path(ev.image_root) / it["image"]) for it in items], ev.image_control, ev.seed,
                            out_dir / "image_control")
    requests = builder.build([it["question"] + ev.prompt_suffix for it in items], images)
    if ev.describe_first:
        requests = describe_first(requests, ev.describe_first, answerer, ev.describe_max_new_tokens)
    predictions = answerer.answer(requests)
    scores, metrics = scorer.score(predictions, items)
    write_jsonl(out_dir / f"answers_{split}.jsonl", [
        {"question_id": it["question_id"], "image": it["image"], "question": it["question"], "prompt": r["prompt"],
         "images": r["images"], "prediction": p, "answer": it.get("answers", it.get("answer")), "correct": s,
         "retrieved": r.get("retrieved", []), **({"description": r["description"]} if "description" in r else {})}
        for it, r, p, s in zip(items, requests, predictions, scores)])
    return metrics
