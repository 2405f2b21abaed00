"""POPE object-hallucination evaluation and a knowledge-VQA check, each with optional retrieval (SURf).

`evaluation.kind: pope` answers the POPE questions of each split ({question_id, image, text, label}
JSON lines) and scores them the official way (`mmrag.metrics.pope`): `pope_results.json` +
`pope_results.png` and one `pope_answers_<split>.jsonl` per split in the output folder.
`evaluation.kind: vqa` answers the single-turn short-answer / multiple-choice questions of a
LLaVA-format file (e.g. the world's test VQA items) and reports exact-match accuracy
(`mmrag.surf.tool_eval.is_correct`) in `vqa_results.json` + `vqa_answers.jsonl`.

`evaluation.retrieval.mode: rag` puts the query image's nearest database images and their captions
before the question (SURf's prompt, `mmrag.surf.prompts.build_rag_prompt`: retrieved images first,
the query image last) with the system prompt of `retrieval.template`; `none` asks about the image alone.
Training with `run.task: pope` is plain instruction tuning on `datasets:` (e.g. SURf's samples).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mmrag.common.registry import TASKS
from mmrag.metrics.pope import pope_metrics, read_jsonl, write_report
from mmrag.surf.construct import split_turns
from mmrag.surf.model_answerer import ModelAnswerer, template_system
from mmrag.surf.prompts import IMAGE_TOKEN, RagConfig, build_rag_prompt, strip_image_token
from mmrag.surf.tool_eval import is_correct
from mmrag.tasks.base import Task
from mmrag.common.errors import UserError

RETRIEVAL_MODES = ("none", "rag")
EVAL_KINDS = ("pope", "vqa")


class PopeTaskError(UserError, ValueError):
    """A bad evaluation input: names the file, the line/item and what was expected."""


class ImageRetriever:
    """Query image -> its nearest database items {"id", "image" (absolute), "caption", "score"}."""

    def __init__(self, retrieval_cfg) -> None:
        from mmrag.retrieval.clip_embedder import ClipEmbedder
        from mmrag.retrieval.dense_index import DenseIndex
        from mmrag.common.config import plain

        if not retrieval_cfg.database:
            raise PopeTaskError("evaluation.retrieval.database: a DenseIndex folder is required when mode is 'rag'")
        index = DenseIndex.load(retrieval_cfg.database)
        overrides = plain(retrieval_cfg.embedder) or {}
        if overrides:  # e.g. {device: cpu}: the database's own embedder config with these keys replaced
            index = DenseIndex.load(retrieval_cfg.database, ClipEmbedder({**index.manifest["embedder"], **overrides}))
        self.index, self.k = index, int(retrieval_cfg.k)

    def retrieve(self, image_paths: Sequence[str]) -> Dict[str, List[Dict[str, Any]]]:
        """Hits per distinct path (each image embedded once), the query image itself excluded."""
        unique = list(dict.fromkeys(str(p) for p in image_paths))
        results = self.index.search_by_image(unique, self.k, exclude_self=True)
        return {path: [{"id": h.id, "image": str(self.index.image_path(h)), "caption": h.meta.get("caption", ""),
                        "score": h.score} for h in hits]
                for path, hits in zip(unique, results.hits)}


class RequestBuilder:
    """(question, image) -> an answer request, plain or with the SURf RAG prompt."""

    def __init__(self, retrieval_cfg) -> None:
        mode = retrieval_cfg.mode
        if mode not in RETRIEVAL_MODES:
            raise PopeTaskError(f"evaluation.retrieval.mode: expected one of {RETRIEVAL_MODES}, got {mode!r}")
        self.retriever = ImageRetriever(retrieval_cfg) if mode == "rag" else None
        self.rag_cfg = RagConfig(k=int(retrieval_cfg.k), threshold=retrieval_cfg.threshold)
        self.system = template_system(retrieval_cfg.template) if mode == "rag" else None

    def build(self, questions: Sequence[str], images: Sequence[str]) -> List[Dict[str, Any]]:
        if self.retriever is None:
            return [{"prompt": f"{IMAGE_TOKEN}\n{strip_image_token(q)}", "images": [img]} for q, img in zip(questions, images)]
        hits = self.retriever.retrieve(images)
        requests = []
        for question, image in zip(questions, images):
            rag = build_rag_prompt(question, image, hits[str(image)], self.rag_cfg)
            requests.append({"prompt": rag.prompt, "images": rag.images, "system": self.system,
                             "retrieved": [{"id": r["id"], "score": round(r["score"], 4)} for r in rag.retrieved]})
        return requests


def read_pope_questions(path: Path, max_samples: Optional[int]) -> List[Dict[str, Any]]:
    """POPE question rows (checked for question_id / image / text / label), the first `max_samples`."""
    if not path.is_file():
        raise PopeTaskError(f"evaluation.pope_file: {path} does not exist")
    rows = read_jsonl(path)
    for n, row in enumerate(rows, start=1):
        missing = [key for key in ("question_id", "image", "text", "label") if key not in row]
        if missing or row["label"] not in ("yes", "no"):
            raise PopeTaskError(f"{path}: line {n} needs question_id, image, text and a yes/no label (missing {missing or 'label value'})")
    return rows[:max_samples] if max_samples else rows


def read_vqa_questions(path: Path, id_suffixes: Sequence[str], max_samples: Optional[int]) -> List[Dict[str, Any]]:
    """Single-turn short-answer / multiple-choice questions of the LLaVA records whose id ends with a suffix."""
    if not path.is_file():
        raise PopeTaskError(f"evaluation.vqa_file: {path} does not exist")
    records = [r for r in json.loads(path.read_text()) if str(r.get("id", "")).endswith(tuple(id_suffixes))]
    if not records:
        raise PopeTaskError(f"{path}: no record id ends with any of {list(id_suffixes)}")
    questions = [q for q in split_turns(records) if q["answer_type"] in ("short", "mc")]
    return questions[:max_samples] if max_samples else questions


def _write_jsonl(path: Path, rows: Sequence[Dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


@TASKS.register("pope")
class PopeTask(Task):
    DEFAULTS = {
        "run": {},
        "evaluation": {
            "kind": "pope",                                           # pope | vqa
            "pope_file": "dataset/world_small/pope/{split}.jsonl",    # {split} -> each of `splits`
            "image_root": "dataset/world_small/images",               # POPE image names are relative to it
            "splits": ["random", "popular", "adversarial"],
            "prompt_suffix": "",                                      # appended to each POPE question
            "vqa_file": "dataset/world_small/llava/instruct_test.json",
            "vqa_image_root": "dataset/world_small",
            "vqa_id_suffixes": ["_vqa"],
            "max_samples": None,                                      # questions per split (null: all)
            "batch_size": 32,
            "max_new_tokens": 8,
            "retrieval": {
                "mode": "none",                                       # none | rag
                "database": None,                                     # DenseIndex folder (create_index.py)
                "k": 2,                                               # retrieved items in the prompt
                "threshold": None,                                    # lowest cosine allowed in the prompt
                "template": "vicuna_v1_retrieval",                    # whose system prompt RAG requests use
                "embedder": {},                                       # overrides of the database's embedder cfg
            },
        },
    }

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        ev, out_dir = cfg.evaluation, Path(out_dir)
        if ev.kind not in EVAL_KINDS:
            raise PopeTaskError(f"evaluation.kind: expected one of {EVAL_KINDS}, got {ev.kind!r}")
        answerer = ModelAnswerer(model, self.build_processor(cfg, model), ev.batch_size, ev.max_new_tokens,
                                 progress=True)
        builder = RequestBuilder(ev.retrieval)
        if ev.kind == "vqa":
            return self.evaluate_vqa(answerer, builder, ev, out_dir)
        return self.evaluate_pope(answerer, builder, ev, out_dir)

    def evaluate_pope(self, answerer: ModelAnswerer, builder: RequestBuilder, ev, out_dir: Path) -> Dict[str, Any]:
        """Per split: answers -> pope_answers_<split>.jsonl; metrics -> pope_results.json/.png."""
        results: Dict[str, Any] = {}
        for split in ev.splits:
            questions = read_pope_questions(Path(str(ev.pope_file).format(split=split)), ev.max_samples)
            images = [str(Path(ev.image_root) / q["image"]) for q in questions]
            requests = builder.build([q["text"] + ev.prompt_suffix for q in questions], images)
            answers = answerer.answer(requests)
            _write_jsonl(out_dir / f"pope_answers_{split}.jsonl", [
                {"question_id": q["question_id"], "image": q["image"], "prompt": r["prompt"], "text": a,
                 "label": q["label"], "retrieved": r.get("retrieved", [])}
                for q, r, a in zip(questions, requests, answers)])
            results[split] = pope_metrics(answers, [q["label"] for q in questions])
        write_report(results, out_dir, title=f"POPE ({ev.retrieval.mode})")
        return results

    def evaluate_vqa(self, answerer: ModelAnswerer, builder: RequestBuilder, ev, out_dir: Path) -> Dict[str, Any]:
        """Exact-match accuracy (overall and per answer type) -> vqa_results.json, vqa_answers.jsonl."""
        questions = read_vqa_questions(Path(ev.vqa_file), list(ev.vqa_id_suffixes), ev.max_samples)
        images = [str(Path(ev.vqa_image_root) / q["image"]) for q in questions]
        answers = answerer.answer(builder.build([q["question"] for q in questions], images))
        correct = [is_correct(a, q["answer"], q["answer_type"]) for q, a in zip(questions, answers)]
        _write_jsonl(out_dir / "vqa_answers.jsonl", [
            {"qid": q["qid"], "question": q["question"], "answer": q["answer"], "prediction": a, "correct": c}
            for q, a, c in zip(questions, answers, correct)])
        results = {"accuracy": sum(correct) / len(correct), "num": len(correct), "by_family": {}}
        for family in sorted({_family(q["question"]) for q in questions}):
            hits = [c for q, c in zip(questions, correct) if _family(q["question"]) == family]
            results["by_family"][family] = {"accuracy": sum(hits) / len(hits), "num": len(hits)}
        (out_dir / "vqa_results.json").write_text(json.dumps(results, indent=2))
        return results


def _family(question: str) -> str:
    """A question's first two words ('How many', 'What colour'): its family in the report."""
    return " ".join(question.split()[:2])
