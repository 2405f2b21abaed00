"""The same multiple-choice answers under each official reading rule, and what circular evaluation
changes: a report over vqa_eval's answers file of a circular question file (mmrag-convert-benchmark
--benchmark circular_mc or mmbench).

    rules (original option order, rotation 0 only):
        mc_seed        the first character is the letter (SEED-Bench as DataEngine scores it)
        mc_mmbench     the one option letter standing as a word, else the one option text (MMBench)
        lenient        mmrag.metrics.answers.choice_letter (the `multiple_choice` scorer)
    circular: vanilla (rows right / rows) and circular (questions whose every rotation is right),
    with paired bootstrap intervals (questions resampled) for circular - rotation 0 and mmbench - seed;
    letters: how often each letter is predicted over all rotations, against the gold letters.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from mmrag.common.errors import DataFormatError
from mmrag.common.jsonl import read_jsonl
from mmrag.common.tool_config import register_tool
from mmrag.metrics.answers import choice_letter
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.metrics.vqa_official import CIRCULAR_STRIDE, clean_generation, mmbench_choice, seed_choice

Row = Dict[str, Any]


def join_answers(questions: Sequence[Row], answers: Sequence[Row], source: str) -> List[Row]:
    """Question rows with their prediction (every answered question must be in the question file)."""
    by_id = {str(q["question_id"]): q for q in questions}
    joined = []
    for n, a in enumerate(answers, start=1):
        q = by_id.get(str(a.get("question_id")))
        if q is None:
            raise DataFormatError(f"{source}:{n}: question_id {a.get('question_id')!r} is not in the question file")
        joined.append({**q, "prediction": clean_generation(a["prediction"])})
    return joined


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _difference(a: Sequence[float], b: Sequence[float]) -> Dict[str, Any]:
    """mean(a) - mean(b) with its paired bootstrap interval and text ({} when there is nothing to compare)."""
    if not a:
        return {}
    result = paired_bootstrap(a, b)
    return {**result, "text": format_difference(result)}


def rule_report(rows: Sequence[Row]) -> Dict[str, Any]:
    """The report of the module doc over joined rows (each with index, options, answer, prediction)."""
    groups: Dict[int, List[Row]] = {}
    for row in rows:
        groups.setdefault(int(row["index"]) % CIRCULAR_STRIDE, []).append(row)
    whole = {g: rs for g, rs in groups.items() if len(rs) == len(rs[0]["options"])}
    firsts = [min(rs, key=lambda r: int(r["index"])) for rs in whole.values()]
    rules = {"mc_seed": [float(seed_choice(r["prediction"]) == r["answer"]) for r in firsts],
             "mc_mmbench": [float(mmbench_choice(r["prediction"], r["options"]) == r["answer"]) for r in firsts],
             "lenient": [float(choice_letter(r["prediction"], r["options"]) == r["answer"]) for r in firsts]}
    circular = [float(all(mmbench_choice(r["prediction"], r["options"]) == r["answer"] for r in rs))
                for rs in whole.values()]
    every = [r for rs in whole.values() for r in rs]
    predicted = Counter(mmbench_choice(r["prediction"], r["options"]) or "none" for r in every)
    gold = Counter(r["answer"] for r in every)
    circ_minus_r0 = _difference(circular, rules["mc_mmbench"])
    mmb_minus_seed = _difference(rules["mc_mmbench"], rules["mc_seed"])
    return {"questions": len(whole), "incomplete_questions": len(groups) - len(whole),
            "rotation0": {name: _mean(v) for name, v in rules.items()},
            "vanilla_all_rotations": _mean([float(mmbench_choice(r["prediction"], r["options"]) == r["answer"])
                                            for r in every]),
            "circular": _mean(circular),
            "circular_minus_rotation0": circ_minus_r0, "mmbench_minus_seed": mmb_minus_seed,
            "predicted_letters": dict(sorted(predicted.items())), "gold_letters": dict(sorted(gold.items()))}


def by_category(rows: Sequence[Row], key: str = "category") -> Mapping[str, Dict[str, Any]]:
    """Questions, rotation-0 rule accuracies and circular accuracy per category (e.g. the world's qtype)."""
    out = {}
    for cat in sorted({str(r.get(key, "")) for r in rows}):
        report = rule_report([r for r in rows if str(r.get(key, "")) == cat])
        out[cat] = {k: report[k] for k in ("questions", "rotation0", "circular")}
    return out


BENCHMARK_RULES = register_tool("benchmark_rules", {
    "questions": None,   # the circular question file (mmrag-convert-benchmark: circular_mc or mmbench)
    "answers": None,     # vqa_eval's answers_<split>.jsonl for it
}, required=("questions", "answers"))


def benchmark_rules(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """rule_report of an answers file, with the per-category summary."""
    questions_path, answers_path = Path(str(cfg["questions"])), Path(str(cfg["answers"]))
    for path, what in ((questions_path, "question file"), (answers_path, "answers file")):
        if not path.is_file():
            raise DataFormatError(f"{path}: {what} does not exist")
    rows = join_answers(read_jsonl(questions_path), read_jsonl(answers_path), str(answers_path))
    return {**rule_report(rows), "by_category": by_category(rows)}
