"""The MLLM-DataEngine item format and its three training / evaluation views.

An item is one question about one image:

    {id, instruction, answer, short_answer, options (4 strings), choice_answer ('A'..'D'),
     image (path relative to the data root), qtype, ...extra keys kept as they are}

`options[ord(choice_answer) - ord('A')]` is the short answer. Three views of an item (DataEngine's
engine_da / engine_mc / engine_mcp):

- `direct`       the instruction + DIRECT_SUFFIX -> the short answer
- `mc`           the instruction, the options lettered in stored order, MC_SUFFIX -> the letter
- `mc_shuffled`  the same with the options in a per-item permutation (seeded by the item id and a
                 seed), so an answer letter cannot be learnt from the position

`read_items` reads a JSON list of items; a row whose qtype is not a known type, or that misses a key,
is left out and counted under a one-line cause (`ItemReport.skipped`), never silently.
"""
from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from mmrag.common.errors import DataFormatError

LETTERS = "ABCD"
VIEWS = ("direct", "mc", "mc_shuffled")
REQUIRED_KEYS = ("id", "instruction", "answer", "short_answer", "options", "choice_answer", "image", "qtype")
DIRECT_SUFFIX = "Answer with a single word or phrase."
MC_SUFFIX = "Answer with the option's letter from the given choices directly."

Item = Dict[str, Any]


@dataclass
class ItemReport:
    """What `read_items` kept and what it left out (cause -> count, first example id per cause)."""

    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: Dict[str, str] = field(default_factory=dict)

    def skip(self, cause: str, item_id: str) -> None:
        self.skipped[cause] += 1
        self.examples.setdefault(cause, item_id)

    def lines(self) -> List[str]:
        """One line per cause: '<count> rows skipped: <cause> (first: <id>)'."""
        return [f"{n} rows skipped: {cause} (first: {self.examples[cause]})" for cause, n in sorted(self.skipped.items())]


def item_problem(item: Any, known_qtypes: Optional[Sequence[str]]) -> Optional[str]:
    """None for a well-formed item, else a one-line cause."""
    if not isinstance(item, dict):
        return f"not an object ({type(item).__name__})"
    missing = [k for k in REQUIRED_KEYS if k not in item]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    if known_qtypes is not None and item["qtype"] not in known_qtypes:
        return f"unknown qtype '{item['qtype']}' (known: {', '.join(known_qtypes)})"
    options = item["options"]
    if not isinstance(options, list) or len(options) != len(LETTERS) or len(set(map(str, options))) != len(LETTERS):
        return f"options must be {len(LETTERS)} distinct strings"
    if item["choice_answer"] not in LETTERS:
        return f"choice_answer '{item['choice_answer']}' is not one of {', '.join(LETTERS)}"
    if str(options[LETTERS.index(item["choice_answer"])]) != str(item["short_answer"]):
        return "the option at choice_answer is not the short_answer"
    return None


def read_items(path: Path, known_qtypes: Optional[Sequence[str]] = None) -> Tuple[List[Item], ItemReport]:
    """Items of a JSON list file, with a report of the rows left out (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: DataEngine item file does not exist")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from err
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of DataEngine items, got {type(rows).__name__}")
    report, items = ItemReport(), []
    for n, row in enumerate(rows):
        cause = item_problem(row, known_qtypes)
        if cause is None:
            items.append(row)
        else:
            report.skip(cause, str(row.get("id", f"row {n}")) if isinstance(row, dict) else f"row {n}")
    report.kept = len(items)
    return items, report


# ----------------------------------------------------------------------------- views
def lettered(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def shuffled_options(item: Item, seed: int = 0) -> Tuple[List[str], str]:
    """(options in the item's seeded permutation, the correct letter in that order)."""
    order = list(range(len(item["options"])))
    random.Random(zlib.crc32(f"{seed}:{item['id']}".encode())).shuffle(order)
    options = [item["options"][i] for i in order]
    return options, LETTERS[options.index(item["short_answer"])]


def view_prompt(item: Item, view: str, seed: int = 0) -> Tuple[str, str, Optional[Dict[str, str]]]:
    """(question text without the image token, gold answer, {letter: option} or None) of one view."""
    if view == "direct":
        return f"{item['instruction']} {DIRECT_SUFFIX}", str(item["short_answer"]), None
    if view == "mc":
        options, letter = list(item["options"]), item["choice_answer"]
    elif view == "mc_shuffled":
        options, letter = shuffled_options(item, seed)
    else:
        raise DataFormatError(f"unknown DataEngine view '{view}'; views: {', '.join(VIEWS)}")
    text = f"{item['instruction']}\n{lettered(options)}\n{MC_SUFFIX}"
    return text, letter, {LETTERS[i]: o for i, o in enumerate(options)}


def llava_record(item: Item, view: str, seed: int = 0) -> Dict[str, Any]:
    """One LLaVA conversation record (the `llava_instruct` builder's format) of an item's view."""
    text, gold, _ = view_prompt(item, view, seed)
    return {"id": f"{item['id']}_{view}", "image": item["image"],
            "conversations": [{"from": "human", "value": f"<image>\n{text}"}, {"from": "gpt", "value": gold}]}


def eval_row(item: Item, view: str, seed: int = 0) -> Dict[str, Any]:
    """One `vqa_jsonl` question row (vqa_eval's reader) of an item's view; qtype kept for per-type metrics."""
    text, gold, options = view_prompt(item, view, seed)
    row = {"question_id": item["id"], "image": item["image"], "question": text, "answer": gold,
           "answer_type": "short" if view == "direct" else "mc", "qtype": item["qtype"]}
    if options is not None:
        row["options"] = options
    return row


def llava_records(items: Iterable[Item], views: Sequence[str] = VIEWS, seed: int = 0) -> List[Dict[str, Any]]:
    return [llava_record(item, view, seed) for item in items for view in views]
