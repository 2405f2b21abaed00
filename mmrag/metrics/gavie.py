"""GAVIE: free-form answers scored 0-10 on relevancy and accuracy by a judge that reads the image's annotations.

The judge sees the image's dense captions with boxes (LRV's "<caption> X: Y: Width: Height:" lines,
plus the facts of the entities shown), the instruction, and one or more answers; it grades each
answer on Relevancy (does it respond to the instruction) and Accuracy (is what it says consistent
with the annotations), 0-10, with a reason each.

Judges (all answer `judge(items, answer_lists) -> [[JudgeScore per answer] per item]`):
    LLMJudge      any ChatBackend: a local HF causal LM (mmrag.models.text_generator.LocalChatModel)
                  or an OpenAI-compatible endpoint (mmrag.common.chat_client.OpenAIChatClient)
    OracleJudge   the world-oracle (mmrag.metrics.gavie_oracle): checks each claim of the answer
                  against the scene graph and entity facts; no language model

The reply parser is strict on purpose: a score that is missing, outside 0-10, ambiguous ("7 or 8")
or wrapped in prose ("I'd say around 7") is a parse failure, counted and reported with its cause,
never read as zero. `summarize` gives the mean and 95% bootstrap interval of each score over the
parsed answers, and the parse-failure and judge-error rates over all of them.

Items are dicts with "question" (the instruction) and "annotations" (the dense-caption text) for an
LLM judge, "scene" and "vocabulary" for the oracle (mmrag.datasets.world.gavie writes both), and
"question_id" to name the item in failure messages.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mmrag.common.chat_client import ChatBackend
from mmrag.common.errors import ConfigError, DataFormatError, MissingPathError
from mmrag.common.registry import SCORERS
from mmrag.metrics.bootstrap import bootstrap_mean
from mmrag.metrics.gavie_oracle import WorldOracle

Item = Mapping[str, Any]
SCORE_NAMES = ("relevancy", "accuracy")
MAX_LISTED_FAILURES = 20

JUDGE_SYSTEM = (
    "You are a careful teacher who grades answers about a picture. You cannot see the picture, but you "
    "are given its annotations, which are correct and complete: every object in it, each with a short "
    "caption and its box. Grade only against the annotations, never against guesses."
)
JUDGE_TEMPLATE = """Annotations of the picture. Each caption is followed by its box in pixels: X and Y are the top-left corner, then Width and Height.
{annotations}

Instruction given to the assistant:
{instruction}

{answers}

Grade each answer on two scales from 0 to 10.
Relevancy: does the answer respond to the instruction? 10 means it fully addresses it; 0 means it ignores it.
Accuracy: is everything the answer says consistent with the annotations? 10 means nothing wrong or invented; 0 means mostly wrong or invented. If the instruction assumes something the annotations contradict, an answer that says so is accurate, and one that goes along with it is not.

For each answer write exactly these five lines and nothing else:
Answer <number>
Relevancy: <a whole number from 0 to 10>
Reason: <one sentence>
Accuracy: <a whole number from 0 to 10>
Reason: <one sentence>"""


def judge_messages(annotations: str, instruction: str, answers: Sequence[str]) -> List[Dict[str, str]]:
    """The chat messages asking a judge to grade `answers` to `instruction` (one or more answers)."""
    block = "\n".join(f"Answer {k}: {' '.join(str(a).split()) or '(empty)'}" for k, a in enumerate(answers, 1))
    user = JUDGE_TEMPLATE.format(annotations=annotations.strip() or "(no annotations)",
                                 instruction=instruction.strip(), answers=block)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- the reply parser
@dataclass(frozen=True)
class JudgeScore:
    """One answer's grades; `failure` set (and scores None) when the judge's reply could not be used."""

    relevancy: Optional[float]
    accuracy: Optional[float]
    relevancy_reason: str = ""
    accuracy_reason: str = ""
    failure: Optional[str] = None
    failure_kind: Optional[str] = None     # parse | judge_error

    @classmethod
    def failed(cls, cause: str, kind: str = "parse") -> "JudgeScore":
        return cls(None, None, failure=cause, failure_kind=kind)


_BLOCK = re.compile(r"(?im)^[\s*#>_-]*answer\s*(?:#\s*)?(\d+)\s*[*_]*\s*:?[*_]*\s*$")
_FIELD = re.compile(r"(?im)^[\s*#>_-]*(relevancy|relevance|accuracy)[*_]*(?:\s+score)?[*_]*\s*[:=]\s*(.*)$")
_REASON = re.compile(r"(?im)^[\s*#>_-]*reason[*_]*\s*[:=]\s*(.*)$")
_VALUE = re.compile(r"^[*_\s]*(-?\d+(?:\.\d+)?)[*_]*(?:\s*(?:/|out\s+of)\s*10)?[*_]*(?P<rest>.*)$", re.I)
_AMBIGUOUS = re.compile(r"^\s*(?:or|to|and|-|–|~)\s*-?\d", re.I)


def _score_value(name: str, text: str) -> Tuple[Optional[float], Optional[str]]:
    """(value, None) or (None, why it is not a usable 0-10 score)."""
    match = _VALUE.match(text.strip())
    if not match:
        return None, f"{name} is not a number: {text.strip()[:60]!r}"
    if _AMBIGUOUS.match(match.group("rest")):
        return None, f"{name} is ambiguous: {text.strip()[:60]!r}"
    value = float(match.group(1))
    if not 0 <= value <= 10:
        return None, f"{name} {match.group(1)} is outside 0-10"
    return value, None


def _parse_block(text: str) -> JudgeScore:
    """One answer's lines: exactly one usable value per score, and the reason line after each."""
    values: Dict[str, float] = {}
    reasons: Dict[str, str] = {}
    fields = list(_FIELD.finditer(text))
    for k, match in enumerate(fields):
        name = "relevancy" if match.group(1).lower().startswith("relev") else "accuracy"
        value, problem = _score_value(name, match.group(2))
        if problem:
            return JudgeScore.failed(problem)
        if name in values and values[name] != value:
            return JudgeScore.failed(f"two different {name} scores ({values[name]:g} and {value:g})")
        values[name] = value
        end = fields[k + 1].start() if k + 1 < len(fields) else len(text)
        reason = _REASON.search(text, match.end(), end)
        reasons[name] = reason.group(1).strip() if reason else ""
    missing = [n for n in SCORE_NAMES if n not in values]
    if missing:
        return JudgeScore.failed(f"no {' and no '.join(missing)} score")
    return JudgeScore(values["relevancy"], values["accuracy"], reasons["relevancy"], reasons["accuracy"])


def parse_judge_reply(reply: Optional[str], n_answers: int) -> List[JudgeScore]:
    """One JudgeScore per answer from a judge's reply ("Answer k" blocks; a single answer may omit the header)."""
    if not reply or not reply.strip():
        return [JudgeScore.failed("empty reply")] * n_answers
    headers = list(_BLOCK.finditer(reply))
    if not headers:
        if n_answers == 1:
            return [_parse_block(reply)]
        return [JudgeScore.failed(f"no 'Answer k' blocks for {n_answers} answers")] * n_answers
    blocks: Dict[int, str] = {}
    for k, match in enumerate(headers):
        number = int(match.group(1))
        end = headers[k + 1].start() if k + 1 < len(headers) else len(reply)
        if number in blocks:
            return [JudgeScore.failed(f"answer {number} graded twice")] * n_answers
        blocks[number] = reply[match.end():end]
    return [_parse_block(blocks[k]) if k in blocks else JudgeScore.failed(f"no block for answer {k}")
            for k in range(1, n_answers + 1)]


# ----------------------------------------------------------------------------- judges
JUDGE_MODES = ("free", "scaffold", "expected")


class LLMJudge:
    """GAVIE with a language model behind any ChatBackend.

    mode "free": all answers of an item in one prompt, the reply parsed as GAVIE's graded blocks.
    mode "scaffold" (for small models that do not keep the format): one answer per prompt, asked twice
    with the reply prefilled as "Relevancy:" and as "Accuracy:"; the model only has to continue with a
    number, which the same strict rules parse. Needs a backend that continues a final assistant
    message (LocalChatModel does; of the servers, those that support it). No reasons in this mode.
    mode "expected" (local models only): the reply prefilled as "Relevancy: " / "Accuracy: ", the
    score is the expectation of the model's probabilities of 0..10 read from its logits
    (LocalChatModel.zero_to_ten_distribution); a grade whose digits hold less than `min_digit_mass`
    of the next-token probability counts as a parse failure (the model would not have written a number).
    """

    def __init__(self, backend: ChatBackend, max_tokens: int = 160, temperature: float = 0.0,
                 name: str = "llm", mode: str = "free", min_digit_mass: float = 0.0) -> None:
        if mode not in JUDGE_MODES:
            raise ConfigError(f"judge mode {mode!r}: expected one of {', '.join(JUDGE_MODES)}")
        if mode == "expected" and not hasattr(backend, "zero_to_ten_distribution"):
            raise ConfigError("judge mode 'expected' reads the model's logits: it needs a local backend (type: local)")
        self.min_digit_mass = float(min_digit_mass)
        self.digit_mass: List[float] = []        # mode expected: the last call's digit mass per grade and score
        self.backend, self.max_tokens, self.temperature, self.name = backend, max_tokens, temperature, name
        self.mode = mode
        self.replies: List[Optional[str]] = []   # the last call's raw replies, for the report

    def judge(self, items: Sequence[Item], answer_lists: Sequence[Sequence[str]]) -> List[List[JudgeScore]]:
        conversations = []
        for item, answers in zip(items, answer_lists):
            if "annotations" not in item:
                raise DataFormatError(f"item {item.get('question_id')}: no 'annotations' for the GAVIE judge "
                                      "(mmrag.datasets.world.gavie writes them)")
            conversations.append(judge_messages(item["annotations"], item["question"], answers))
        if self.mode == "scaffold":
            return self._judge_scaffold(conversations, answer_lists)
        if self.mode == "expected":
            return self._judge_expected(conversations, answer_lists)
        results = self.backend.complete(conversations, max_tokens=self.max_tokens, temperature=self.temperature)
        self.replies = [r.text for r in results]
        out = []
        for result, answers in zip(results, answer_lists):
            if result.error is not None:
                out.append([JudgeScore.failed(f"judge error: {result.error}", "judge_error")] * len(answers))
            else:
                out.append(parse_judge_reply(result.text, len(answers)))
        return out

    def _judge_scaffold(self, conversations, answer_lists) -> List[List[JudgeScore]]:
        if any(len(a) != 1 for a in answer_lists):
            raise ConfigError("judge mode 'scaffold' grades one answer per prompt (answers_per_prompt: 1)")
        asked = [conv + [{"role": "assistant", "content": f"{name.capitalize()}:"}]
                 for conv in conversations for name in SCORE_NAMES]
        results = self.backend.complete(asked, max_tokens=self.max_tokens, temperature=self.temperature)
        self.replies = [" | ".join(f"{n.capitalize()}:{r.text}" for n, r in zip(SCORE_NAMES, results[k:k + 2]))
                        for k in range(0, len(results), 2)]
        out = []
        for k in range(0, len(results), 2):
            errors = [r.error for r in results[k:k + 2] if r.error is not None]
            if errors:
                out.append([JudgeScore.failed(f"judge error: {errors[0]}", "judge_error")])
                continue
            values, problems = [], []
            for name, result in zip(SCORE_NAMES, results[k:k + 2]):
                first_line = ((result.text or "").strip().splitlines() or [""])[0]
                value, problem = _score_value(name, first_line)
                values.append(value)
                if problem:
                    problems.append(problem)
            out.append([JudgeScore.failed("; ".join(problems)) if problems else JudgeScore(values[0], values[1])])
        return out

    def _judge_expected(self, conversations, answer_lists) -> List[List[JudgeScore]]:
        if any(len(a) != 1 for a in answer_lists):
            raise ConfigError("judge mode 'expected' grades one answer per prompt (answers_per_prompt: 1)")
        asked = [conv + [{"role": "assistant", "content": f"{name.capitalize()}: "}]
                 for conv in conversations for name in SCORE_NAMES]
        dists = self.backend.zero_to_ten_distribution(asked)
        self.digit_mass = [d["mass"] for d in dists]
        self.replies = [" | ".join(f"{n}: p={[round(p, 3) for p in d['probs']]} mass={d['mass']:.3f}"
                                   for n, d in zip(SCORE_NAMES, dists[k:k + 2])) for k in range(0, len(dists), 2)]
        out = []
        for k in range(0, len(dists), 2):
            pair = dists[k:k + 2]
            low = [f"{n} digits hold {d['mass']:.0%} of the next-token probability" for n, d in zip(SCORE_NAMES, pair)
                   if d["mass"] < self.min_digit_mass]
            if low:
                out.append([JudgeScore.failed("; ".join(low))])
                continue
            values = [sum(v * p for v, p in enumerate(d["probs"])) for d in pair]
            out.append([JudgeScore(values[0], values[1], f"digit mass {pair[0]['mass']:.3f}",
                                   f"digit mass {pair[1]['mass']:.3f}")])
        return out


class OracleJudge:
    """GAVIE from the world's scene graph (mmrag.metrics.gavie_oracle.WorldOracle); deterministic."""

    name = "oracle"

    def __init__(self, vocabulary: Optional[Mapping[str, Any]] = None) -> None:
        self._fixed = WorldOracle(vocabulary) if vocabulary is not None else None
        self._by_path: Dict[str, WorldOracle] = {}

    def _oracle(self, item: Item) -> WorldOracle:
        if self._fixed is not None:
            return self._fixed
        path = item.get("vocabulary")
        if not path:
            raise DataFormatError(f"item {item.get('question_id')}: no 'vocabulary' (path of the world's "
                                  "gavie/vocabulary.json) for the oracle judge")
        if path not in self._by_path:
            if not Path(path).is_file():
                raise MissingPathError(f"item {item.get('question_id')}: vocabulary {path} does not exist "
                                       "(write it with mmrag.datasets.world.gavie.write_gavie)")
            self._by_path[path] = WorldOracle(json.loads(Path(path).read_text(encoding="utf-8")))
        return self._by_path[path]

    def judge(self, items: Sequence[Item], answer_lists: Sequence[Sequence[str]]) -> List[List[JudgeScore]]:
        out = []
        for item, answers in zip(items, answer_lists):
            if "scene" not in item:
                raise DataFormatError(f"item {item.get('question_id')}: no 'scene' for the oracle judge")
            oracle = self._oracle(item)
            verdicts = [oracle.judge(item["question"], a, item["scene"]) for a in answers]
            out.append([JudgeScore(v.relevancy, v.accuracy, v.reason, v.reason) for v in verdicts])
        return out


# ----------------------------------------------------------------------------- summaries
def summarize(scores: Sequence[JudgeScore], names: Sequence[str] = (), seed: int = 0) -> Dict[str, Any]:
    """Mean and 95% bootstrap interval per score over the usable grades; failure rates over all grades.

    `names[i]` names grade i in the failure list (e.g. "world_000000000045_lrv_3 answer 2").
    An accuracy of None without a failure (the oracle found no checkable claim) is counted as
    `accuracy_unscored`, not as a failure and not as zero."""
    n = len(scores)
    out: Dict[str, Any] = {"num": n}
    for score in SCORE_NAMES:
        values = [getattr(s, score) for s in scores if getattr(s, score) is not None]
        out[score] = bootstrap_mean(values, seed=seed) if values else {"mean": None, "low": None, "high": None, "n": 0}
    kinds = [s.failure_kind for s in scores if s.failure]
    out["parse_failures"] = kinds.count("parse")
    out["judge_errors"] = kinds.count("judge_error")
    out["parse_failure_rate"] = out["parse_failures"] / n if n else 0.0
    out["judge_error_rate"] = out["judge_errors"] / n if n else 0.0
    out["accuracy_unscored"] = sum(1 for s in scores if not s.failure and s.accuracy is None)
    named = list(names) or [f"grade {i}" for i in range(n)]
    out["failures"] = [f"{who}: {s.failure}" for who, s in zip(named, scores) if s.failure][:MAX_LISTED_FAILURES]
    return out


# ----------------------------------------------------------------------------- the scorer
@SCORERS.register("gavie")
class GavieScorer:
    """vqa_eval scorer: each prediction graded by the judge (default: the world oracle).

    Per-item score: the accuracy grade 0-10 (None when not graded). Metrics: `summarize`'s, plus
    accuracy / relevancy means on GAVIE's 0-10 scale and as fractions of 10 for the chart."""

    chart = ("accuracy_fraction", "relevancy_fraction")

    def __init__(self, judge=None) -> None:
        self.judge = judge if judge is not None else OracleJudge()

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Tuple[List[Optional[float]], Dict[str, Any]]:
        grades = [g[0] for g in self.judge.judge(items, [[p] for p in predictions])]
        summary = summarize(grades, [str(it.get("question_id", i)) for i, it in enumerate(items)])
        metrics: Dict[str, Any] = {"judge": getattr(self.judge, "name", "custom")}
        for name in SCORE_NAMES:
            mean = summary[name]["mean"]
            metrics[f"{name}_fraction"] = float("nan") if mean is None else mean / 10.0
        metrics.update(summary)
        return [g.accuracy for g in grades], metrics
