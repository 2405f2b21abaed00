"""MLLM-DataEngine generators: new items of a chosen question type for a chosen image, steered by the
model's bad cases; the reply parser; the oracle check; IADS-style refinement of type definitions.

A generator answers `generate(requests) -> [Generated]`, one per `Request` (qtype, the image's scene
graph, the in-context bad cases, the new item's id, a seed). Two are built in (GENERATORS):

- `oracle`: the world's default. Writes the item from the scene graph and the entity facts
  (`typed_benchmark.ItemMaker`); steering: with probability `steer` the sub-kind of a random bad case
  (e.g. the attribute 'pattern', the relation 'below', the fact 'diet') is asked again, else any.
- `llm`: sends the DataEngine prompt (system rules + the image's captions and objects with normalised
  boxes and facts + the type's definition + the bad cases as examples) to a `ChatBackend` (a local HF
  model or an OpenAI-compatible endpoint, `mmrag.models.text_generator.build_chat_backend`) and parses
  the reply. A reply is rejected with a counted reason: empty, malformed (no question), truncated (no
  answer), wrong number of choices, two answers, an answer naming no option, coordinates mentioned.

Every parsed item then goes through the oracle check (`typed_benchmark.check_item`): its answer must
be what the scene graph says. `TypeDefinitions` holds each type's definition (prompts/dataengine/<qtype>.txt)
and refines it (IADS) when a type's items keep failing: a rule aimed at the most frequent rejection
is appended and the revision is recorded.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmrag.common.errors import ConfigError, UnknownNameError
from mmrag.datasets import dataengine_items as de
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.datasets.world.language import detailed_phrase, left_to_right, with_article

PROMPT_DIR = Path(__file__).parent / "prompts" / "dataengine"


@dataclass
class Request:
    qtype: str
    graph: tb.SceneGraph
    bad_cases: List[de.Item]
    item_id: str
    seed: int


@dataclass
class Generated:
    """One request's outcome: `item` when kept, else `reason` (a short, countable cause)."""

    item: Optional[de.Item]
    reason: str = "kept"
    reply: Optional[str] = None


class EndpointFailed(RuntimeError):
    """The generator's backend failed after its retries: the round stops and resumes on the next run."""


# ----------------------------------------------------------------------------- oracle generator
class OracleGenerator:
    """New items from the scene graph; see the module doc."""

    name = "oracle"

    def __init__(self, names_by_category: Dict[str, List[str]], steer: float = 0.8) -> None:
        self.maker, self.steer = tb.ItemMaker(names_by_category), float(steer)

    def one(self, request: Request) -> Generated:
        rng = random.Random(request.seed)
        subtype = None
        if request.bad_cases and rng.random() < self.steer:
            subtype = rng.choice(request.bad_cases).get("subtype")
        item = self.maker.make(request.qtype, request.graph, rng, request.item_id, subtype)
        if item is None:
            return Generated(None, "nothing of this type in the image")
        item["source"] = "oracle"
        return Generated(item)

    def generate(self, requests: Sequence[Request]) -> List[Generated]:
        return [self.one(r) for r in requests]


# ----------------------------------------------------------------------------- the prompt
def load_prompt(name: str, prompt_dir: Path = PROMPT_DIR) -> str:
    path = Path(prompt_dir) / f"{name}.txt"
    if not path.is_file():
        raise ConfigError(f"{path}: DataEngine prompt file does not exist (one per question type, plus system.txt)")
    return path.read_text(encoding="utf-8").strip()


def object_line(obj, size: int) -> str:
    """'a blue striped round creature with four legs [0.10, 0.21, 0.31, 0.42]; name zorblat; diet: ...'"""
    x, y, w, h = obj.box
    box = ", ".join(f"{v / size:.2f}" for v in (x, y, x + w, y + h))
    line = f"{with_article(detailed_phrase(obj))} [{box}]"
    if obj.entity is not None:
        facts = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(obj.entity.facts.items()))
        line += f"; name: {obj.entity.name}; {facts}"
    return line


def example_text(item: de.Item) -> str:
    choices = " ".join(f"{de.LETTERS[i]}. {o}" for i, o in enumerate(item["options"]))
    return f"Question: {item['instruction']}\nChoices: {choices}\nAnswer: {item['choice_answer']}"


def build_messages(request: Request, definition: str, system: str) -> List[Dict[str, str]]:
    """The DataEngine prompt of one request as chat messages (system rules, then the user turn)."""
    g = request.graph
    lines = ["Captions:", *[f"- {c}" for c in g.captions],
             "Objects (box = x1, y1, x2, y2 as fractions of the image):",
             *[f"- {object_line(o, g.size)}" for o in left_to_right(g.scene)],
             "", f"Question type: {definition}"]
    if request.bad_cases:
        lines += ["", "The model answered these questions of this type wrongly; write a new question that "
                      "tests the same skill on this image:"]
        lines += [example_text(b) for b in request.bad_cases]
    lines += ["", "Write one new question of this type about this image."]
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


# ----------------------------------------------------------------------------- the parser
_FIELD = re.compile(r"^\s*\**\s*(question|choices|options|answer|explanation)\s*\**\s*[:：]\s*(.*)$", re.I)
_CHOICE = re.compile(r"(?:^|\s|\()([A-H])\s*[.):]\s*(.+?)(?=(?:\s+\(?[A-H]\s*[.):]\s)|$)", re.S)
_COORDS = re.compile(r"\[\s*-?\d*\.?\d+\s*,|\(\s*-?\d*\.\d+\s*,|\b0\.\d+\b|coordinat|bounding box|\bbox(es)?\b", re.I)
REJECT_REASONS = ("empty", "malformed", "truncated", "wrong number of choices", "two answers", "nonexistent option",
                  "mentions coordinates")


@dataclass
class Parsed:
    question: str
    options: List[str]
    letter: str
    explanation: str


def _fields(text: str) -> Dict[str, List[str]]:
    """field name -> its values, in order (a field's text runs until the next field line)."""
    out: Dict[str, List[str]] = {}
    current: Optional[str] = None
    for line in text.splitlines():
        m = _FIELD.match(line)
        if m:
            current = "choices" if m.group(1).lower() == "options" else m.group(1).lower()
            out.setdefault(current, []).append(m.group(2).strip())
        elif current is not None and line.strip():
            out[current][-1] = (out[current][-1] + "\n" + line.strip()).strip()
    return out


def parse_choices(text: str) -> List[Tuple[str, str]]:
    return [(m.group(1), m.group(2).strip().rstrip(";,").strip()) for m in _CHOICE.finditer(text.replace("\n", " "))]


def _answer_letter(answer: str, options: Dict[str, str]) -> Tuple[Optional[str], str]:
    """(letter, '') or (None, reason) for an Answer field."""
    text = answer.strip().strip("*").strip()
    letters = re.findall(r"(?:^|[\s(,])([A-H])(?=$|[\s).,:])", text)
    if len(set(letters)) > 1 and (re.search(r"\b(and|or)\b|,|/", text) or len(text) <= 9):
        return None, "two answers"
    if letters:
        letter = letters[0]
        return (letter, "") if letter in options else (None, "nonexistent option")
    named = [k for k, v in options.items() if v.lower() == text.lower().rstrip(".")]
    if len(named) == 1:
        return named[0], ""
    return None, "nonexistent option"


def parse_reply(text: Optional[str]) -> Tuple[Optional[Parsed], str]:
    """(Parsed, 'ok') or (None, one of REJECT_REASONS)."""
    if text is None or not text.strip():
        return None, "empty"
    fields = _fields(text)
    if not fields.get("question") or not fields["question"][0]:
        return None, "malformed"
    if "answer" not in fields or not fields["answer"][-1]:
        return None, "truncated"
    if len(fields["answer"]) > 1 and len({a.strip()[:1] for a in fields["answer"]}) > 1:
        return None, "two answers"
    choices = parse_choices(" ".join(fields.get("choices", [])))
    letters = [c[0] for c in choices]
    if len(choices) != len(de.LETTERS) or letters != list(de.LETTERS) or len({c[1].lower() for c in choices}) != len(choices):
        return None, "wrong number of choices"
    options = dict(choices)
    letter, reason = _answer_letter(fields["answer"][0], options)
    if letter is None:
        return None, reason
    question = fields["question"][0]
    if _COORDS.search(" ".join([question, *options.values(), fields["answer"][0]])):
        return None, "mentions coordinates"
    return Parsed(question, [options[k] for k in de.LETTERS], letter, " ".join(fields.get("explanation", []))), "ok"


def parsed_item(parsed: Parsed, request: Request, source: str) -> de.Item:
    short = parsed.options[de.LETTERS.index(parsed.letter)]
    return {"id": request.item_id, "instruction": parsed.question, "answer": parsed.explanation or short,
            "short_answer": short, "options": parsed.options, "choice_answer": parsed.letter,
            "image": request.graph.image, "qtype": request.qtype, "source": source}


# ----------------------------------------------------------------------------- type definitions (IADS)
REFINEMENT_RULES = {
    "malformed": "Start the reply with 'Question:' and use the four labelled lines exactly.",
    "truncated": "Keep the question short and always finish with the 'Answer:' and 'Explanation:' lines.",
    "empty": "Always reply with a question in the required format.",
    "wrong number of choices": "Write exactly four different choices, labelled A. B. C. D. on the Choices line.",
    "two answers": "Give exactly one letter on the Answer line.",
    "nonexistent option": "The Answer line holds only the letter of one of the four choices.",
    "mentions coordinates": "Do not write any numbers, boxes or coordinates; describe objects by colour, pattern or position words.",
    "oracle": "Ask only about what the object list states, and point at exactly one object (by its colour, pattern or "
              "position) so the answer is certain.",
}


@dataclass
class TypeDefinitions:
    """Current definition of each type and the history of IADS revisions."""

    definitions: Dict[str, str]
    history: List[Dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, qtypes: Sequence[str], prompt_dir: Path = PROMPT_DIR) -> "TypeDefinitions":
        return cls({q: load_prompt(q, prompt_dir) for q in qtypes})

    def refine(self, qtype: str, reasons: Counter, n_requests: int, round_index: int,
               threshold: float = 0.5, min_requests: int = 5) -> Optional[Dict[str, Any]]:
        """Revise `qtype`'s definition when more than `threshold` of its >= `min_requests` items were
        rejected: append the rule for the most frequent reason not addressed yet. Returns the revision."""
        rejected = {r: n for r, n in reasons.items() if r != "kept"}
        if n_requests < min_requests or sum(rejected.values()) <= threshold * n_requests:
            return None
        old = self.definitions[qtype]
        for reason, _ in sorted(rejected.items(), key=lambda rn: (-rn[1], rn[0])):
            rule = REFINEMENT_RULES.get("oracle" if reason.startswith("oracle") else reason)
            if rule and rule not in old:
                revision = {"round": round_index, "qtype": qtype, "revision": 1 + sum(h["qtype"] == qtype for h in self.history),
                            "rejected": sum(rejected.values()), "requests": n_requests, "reason": reason,
                            "old": old, "new": f"{old} {rule}"}
                self.definitions[qtype] = revision["new"]
                self.history.append(revision)
                return revision
        return None

    def state(self) -> Dict[str, Any]:
        return {"definitions": dict(self.definitions), "history": list(self.history)}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "TypeDefinitions":
        return cls(dict(state["definitions"]), list(state["history"]))


# ----------------------------------------------------------------------------- LLM generator
class LLMGenerator:
    """Items written by a chat backend from the DataEngine prompt; see the module doc."""

    name = "llm"

    def __init__(self, backend, definitions: TypeDefinitions, system: str, max_tokens: int = 160,
                 temperature: float = 0.0) -> None:
        self.backend, self.definitions, self.system = backend, definitions, system
        self.max_tokens, self.temperature = int(max_tokens), float(temperature)

    def generate(self, requests: Sequence[Request]) -> List[Generated]:
        """Raises EndpointFailed when any request's backend call failed after its retries."""
        conversations = [build_messages(r, self.definitions.definitions[r.qtype], self.system) for r in requests]
        results = self.backend.complete(conversations, max_tokens=self.max_tokens, temperature=self.temperature)
        failed = [res.error for res in results if res.error is not None]
        if failed:
            raise EndpointFailed(f"{len(failed)} of {len(requests)} generator requests failed after retries "
                                 f"(first: {failed[0]})")
        out = []
        for request, result in zip(requests, results):
            parsed, reason = parse_reply(result.text)
            item = parsed_item(parsed, request, "llm") if parsed else None
            out.append(Generated(item, "kept" if item else reason, result.text))
        return out


def oracle_checked(generated: Sequence[Generated], requests: Sequence[Request]) -> List[Generated]:
    """Every kept item verified against its image's scene graph; failures rejected as 'oracle: ...'."""
    out = []
    for gen, request in zip(generated, requests):
        if gen.item is not None:
            ok, cause = tb.check_item(gen.item, request.graph)
            if not ok:
                gen = Generated(None, "oracle: " + cause.split(":")[0], gen.reply)
        out.append(gen)
    return out


GENERATORS = ("oracle", "llm")


def build_generator(cfg: Dict[str, Any], names_by_category: Dict[str, List[str]], definitions: TypeDefinitions,
                    backend=None):
    """`cfg`: {type: oracle | llm, steer, backend: {...}, max_tokens, temperature}."""
    kind = cfg.get("type")
    if kind == "oracle":
        return OracleGenerator(names_by_category, cfg.get("steer", 0.8))
    if kind == "llm":
        if backend is None:
            from mmrag.models.text_generator import build_chat_backend

            backend = build_chat_backend(cfg.get("backend") or {}, "generator.backend")
        return LLMGenerator(backend, definitions, load_prompt("system"), cfg.get("max_tokens", 160),
                            cfg.get("temperature", 0.0))
    raise UnknownNameError(f"generator.type is {kind!r}; known generators: {', '.join(GENERATORS)}")
