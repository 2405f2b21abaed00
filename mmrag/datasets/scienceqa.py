"""ScienceQA in its official layout, the QCM-LEPA conversation format, and CaMML's context examples.

Official layout (github.com/lupantech/ScienceQA, data/scienceqa/), also what the world's writer
(`mmrag.datasets.world.scienceqa`) produces:

    problems.json     {pid: {question, choices [str], answer (index into choices), hint, image
                      (file name or null), lecture, solution, split, subject, ...}}
    pid_splits.json   {"train": [pid], "val": [pid], "test": [pid], ...}
    images/<split>/<pid>/<image>

QCM-LEPA: the human turn is "{question}\\nContext: {hint or N/A}\\nOptions: (A) ... (B) ..."
(after "<image>\\n" when the problem has an image); the answer is
"LECTURE: {lecture}\\nSOLUTION: {solution}\\n###\\nANSWER: {letter}.". `QCM-A` keeps only the last
line "ANSWER: {letter}." (short generations for CPU runs; scored by the same extraction).

Context examples (CaMML): a JSON file of retrieved neighbours per problem id, written by
`mmrag.retrievers.context_examples` ({"neighbours": {pid: [train pid, ...]}, "encoder": ...}).
With `context: camml` each sample carries its first `icl_num` neighbours as the model's `context`
input ({pixel_values [k,3,H,W], texts [k]}: each train example's image, or the mean-colour zero
tensor when it has none, and its question + answer text) and the prompt holds `<context>` where the
context module's tokens go (before the query image and question). With `context: text_icl` the same
examples are written into the prompt itself (their images as `<image>`s, their texts as text): the
plain in-context-learning baseline, which costs LLM tokens per shot.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from mmrag.common.errors import ConfigError, DataFormatError
from mmrag.common.paths import require_path
from mmrag.common.registry import DATASETS
from mmrag.datasets.builders import Builder
from mmrag.datasets.multimodal_dataset import ConversationDataset
from mmrag.metrics.scienceqa import letters

PROMPT_FORMATS = ("QCM-LEPA", "QCM-A")
CONTEXT_MODES = ("none", "camml", "text_icl")
IMAGE_TOKEN, CONTEXT_TOKEN = "<image>", "<context>"
PROBLEMS, SPLITS_FILE = "problems.json", "pid_splits.json"


class ScienceQAFormatError(DataFormatError):
    """A malformed problems.json / pid_splits.json / neighbours file: names the file and the id."""


# ----------------------------------------------------------------------------- reading
def _load(path: Path) -> Any:
    if not path.is_file():
        raise ScienceQAFormatError(f"{path}: file does not exist (expected the ScienceQA layout: "
                                   f"{PROBLEMS}, {SPLITS_FILE}, images/<split>/<pid>/)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ScienceQAFormatError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err


def problem_item(pid: str, problem: Any, split: str, root: Path, path: Path) -> Dict[str, Any]:
    """One checked problem as an item {id, split, question, choices, answer (letter), answer_index,
    hint, image (absolute path or None), lecture, solution, has_image, has_text}."""
    if not isinstance(problem, dict) or not isinstance(problem.get("question"), str):
        raise ScienceQAFormatError(f"{path}: problem {pid}: expected an object with a 'question' string")
    choices = problem.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise ScienceQAFormatError(f"{path}: problem {pid}: expected 'choices' to be a list of at least 2 "
                                   f"option strings, got {choices!r}")
    if len(choices) > 26:
        raise ScienceQAFormatError(f"{path}: problem {pid}: {len(choices)} choices; at most 26 (A-Z)")
    answer = problem.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ScienceQAFormatError(f"{path}: problem {pid}: 'answer' must be an index into its "
                                   f"{len(choices)} choices (0-{len(choices) - 1}), got {answer!r}")
    image = problem.get("image")
    hint = (problem.get("hint") or "").strip()
    return {"id": str(pid), "split": split, "question": problem["question"], "choices": list(choices),
            "answer": letters(len(choices))[answer], "answer_index": answer, "hint": hint,
            "image": str(root / "images" / split / str(pid) / image) if image else None,
            "lecture": (problem.get("lecture") or "").strip(), "solution": (problem.get("solution") or "").strip(),
            "has_image": bool(image), "has_text": bool(hint)}


def read_scienceqa(root: str | Path, split: str) -> List[Dict[str, Any]]:
    """The problems of `split` (pid_splits.json order) from an official-layout folder, checked."""
    root = Path(root)
    problems, splits = _load(root / PROBLEMS), _load(root / SPLITS_FILE)
    if not isinstance(problems, dict):
        raise ScienceQAFormatError(f"{root / PROBLEMS}: expected an object {{pid: problem}}")
    if not isinstance(splits, dict) or split not in splits or not isinstance(splits[split], list):
        known = sorted(splits) if isinstance(splits, dict) else []
        raise ScienceQAFormatError(f"{root / SPLITS_FILE}: no list of pids for split {split!r} (has {known})")
    items = []
    for pid in splits[split]:
        if str(pid) not in problems:
            raise ScienceQAFormatError(f"{root / SPLITS_FILE}: split {split} lists pid {pid}, "
                                       f"which {root / PROBLEMS} does not have")
        items.append(problem_item(str(pid), problems[str(pid)], split, root, root / PROBLEMS))
    return items


# ----------------------------------------------------------------------------- the QCM-LEPA format
def question_text(item: Dict[str, Any]) -> str:
    """'{question}\\nContext: {hint or N/A}\\nOptions: (A) x (B) y' (no image token)."""
    options = " ".join(f"({letter}) {choice}" for letter, choice in zip(letters(len(item["choices"])), item["choices"]))
    return f"{item['question']}\nContext: {item['hint'] or 'N/A'}\nOptions: {options}"


def answer_text(item: Dict[str, Any], prompt_format: str = "QCM-LEPA") -> str:
    """The target: 'LECTURE: ...\\nSOLUTION: ...\\n###\\nANSWER: X.' (QCM-LEPA) or 'ANSWER: X.' (QCM-A)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {prompt_format!r}")
    final = f"ANSWER: {item['answer']}."
    if prompt_format == "QCM-A":
        return final
    return f"LECTURE: {item['lecture']}\nSOLUTION: {item['solution']}\n###\n{final}"


def example_text(item: Dict[str, Any], prompt_format: str) -> str:
    """A solved example as one text (a context shot): its question and its answer."""
    return f"{question_text(item)}\n{answer_text(item, prompt_format)}"


def human_turn(item: Dict[str, Any], context: str = "none", shots: Sequence[Dict[str, Any]] = (),
               prompt_format: str = "QCM-LEPA") -> str:
    """The human turn of a problem with its context: `none` (the question, after `<image>` when
    there is one), `camml` (`<context>` first: the context module's tokens), `text_icl` (each shot
    written out, with its image, before the question)."""
    query = (f"{IMAGE_TOKEN}\n" if item["image"] else "") + question_text(item)
    if context == "none":
        return query
    if context == "camml":
        return f"Context from similar solved questions: {CONTEXT_TOKEN}\n{query}"
    if context == "text_icl":
        blocks = [f"Example {n}:\n" + (f"{IMAGE_TOKEN}\n" if shot["image"] else "") + example_text(shot, prompt_format)
                  for n, shot in enumerate(shots, start=1)]
        return "\n".join(blocks + [f"Now this question:\n{query}"])
    raise ConfigError(f"context: expected one of {', '.join(CONTEXT_MODES)}, got {context!r}")


def conversation(item: Dict[str, Any], context: str = "none", shots: Sequence[Dict[str, Any]] = (),
                 prompt_format: str = "QCM-LEPA") -> List[Dict[str, str]]:
    return [{"from": "human", "value": human_turn(item, context, shots, prompt_format)},
            {"from": "gpt", "value": answer_text(item, prompt_format)}]


# ----------------------------------------------------------------------------- neighbours
def read_neighbours(path: str | Path) -> Dict[str, Any]:
    """A neighbours file of `mmrag.retrievers.context_examples` ({"neighbours": {pid: [pid]}, ...})."""
    data = _load(Path(path))
    if not isinstance(data, dict) or not isinstance(data.get("neighbours"), dict):
        raise ScienceQAFormatError(f"{path}: expected {{'neighbours': {{pid: [pid, ...]}}, ...}}")
    return data


def pick_shots(item_id: str, neighbours: Dict[str, List[str]], icl_num: int, path: str,
               pool: Dict[str, Dict[str, Any]], split: str) -> List[Dict[str, Any]]:
    """The first `icl_num` neighbours of `item_id`, checked: enough of them, none is the item itself
    in training, each one in the example pool."""
    found = neighbours.get(item_id)
    if found is None:
        raise ScienceQAFormatError(f"{path}: no neighbours for problem {item_id} (split {split}); rebuild the file")
    if split == "train" and item_id in found:
        raise ScienceQAFormatError(f"{path}: problem {item_id} retrieves itself at training time "
                                   f"(it would see its own answer); rebuild with exclude=self")
    if len(found) < icl_num:
        raise ScienceQAFormatError(f"{path}: problem {item_id} has {len(found)} neighbour(s), fewer than "
                                   f"icl_num={icl_num}")
    missing = [pid for pid in found[:icl_num] if pid not in pool]
    if missing:
        raise ScienceQAFormatError(f"{path}: problem {item_id}: neighbour {missing[0]} is not a training problem")
    return [pool[pid] for pid in found[:icl_num]]


# ----------------------------------------------------------------------------- the dataset
class ScienceQADataset(ConversationDataset):
    """ScienceQA conversations; with `context: camml` each sample also carries its `context` examples."""

    def __init__(self, records: List[Dict[str, Any]], image_processor, name: str,
                 shots: Optional[List[List[Dict[str, Any]]]] = None, prompt_format: str = "QCM-LEPA") -> None:
        super().__init__(records, image_processor, name)
        self.shots, self.prompt_format = shots, prompt_format

    def __getitem__(self, i: int) -> Dict[str, Any]:
        sample = super().__getitem__(i)
        if self.shots is not None:
            sample["context"] = self.context(self.shots[i])
        return sample

    def context(self, shots: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """{pixel_values [k,3,H,W], texts [k]}: an example without an image gets the zero tensor (the
        mean colour after normalisation)."""
        size = self.image_processor.image_size
        pixels = [self.image_processor(s["image"]) if s["image"] else torch.zeros(3, size, size) for s in shots]
        return {"pixel_values": torch.stack(pixels), "texts": [example_text(s, self.prompt_format) for s in shots]}


@DATASETS.register("scienceqa")
class ScienceQABuilder(Builder):
    """`data_path`: the official-layout folder (problems.json, pid_splits.json, images/)."""

    DEFAULTS = {
        "prompt_format": "QCM-LEPA",   # QCM-LEPA | QCM-A
        "context": "none",             # none | camml (context module) | text_icl (examples as prompt text)
        "neighbours": None,            # neighbours JSON ("{split}" replaced), for camml / text_icl
        "icl_num": 3,                  # examples per sample
        "example_split": "train",      # where the neighbours' problems come from
    }

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ScienceQADataset:
        root = require_path(f"datasets.{name}.data_path", cfg.data_path, "ScienceQA folder")
        if cfg.context not in CONTEXT_MODES:
            raise ConfigError(f"datasets.{name}.context: expected one of {', '.join(CONTEXT_MODES)}, got {cfg.context!r}")
        items = read_scienceqa(root, split)[: cfg.max_samples or None]
        shots = shots_for(items, cfg, root, split, name) if cfg.context != "none" else [[] for _ in items]
        records = [{"id": it["id"], "images": [it["image"]] if it["image"] else [], "item": it,
                    "conversations": conversation(it, cfg.context, sh if cfg.context == "text_icl" else (),
                                                  cfg.prompt_format)}
                   for it, sh in zip(items, shots)]
        if cfg.context == "text_icl":  # the examples' images come first, in the order the prompt has them
            for rec, sh in zip(records, shots):
                rec["images"] = [s["image"] for s in sh if s["image"]] + rec["images"]
        return ScienceQADataset(records, processor.image_processor, name,
                                shots if cfg.context == "camml" else None, cfg.prompt_format)


def shots_for(items: Sequence[Dict[str, Any]], cfg, root: Path, split: str, name: str) -> List[List[Dict[str, Any]]]:
    if not cfg.neighbours:
        raise ConfigError(f"datasets.{name}.neighbours: context={cfg.context} needs a neighbours file "
                          f"(mmrag-run-camml writes one per split)")
    path = str(cfg.neighbours).format(split=split)
    neighbours = read_neighbours(path)["neighbours"]
    pool = {it["id"]: it for it in read_scienceqa(root, cfg.example_split)}
    return [pick_shots(it["id"], neighbours, int(cfg.icl_num), path, pool, split) for it in items]
