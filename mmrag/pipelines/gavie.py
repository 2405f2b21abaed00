"""GAVIE judge reliability: how far an LLM judge agrees with the world-oracle judge on the same answers.

GAVIE trusts its judge; on the synthetic world the scene graph gives a judge that is right by
construction (mmrag.metrics.gavie_oracle), so an LLM judge (a local HF model or an endpoint) can be
measured against it. For a seeded sample of the world's GAVIE items (mmrag.datasets.world.gavie),
each answer is graded by both judges, and the report gives per score (relevancy, accuracy):

    spearman            rank correlation of the two judges over the answers both graded, with a 95%
                        bootstrap interval (answers resampled)
    mean_abs_diff       mean |LLM - oracle| on the 0-10 scale, with its interval
    bias                mean (LLM - oracle), paired bootstrap interval ("within noise" when it holds 0)
    by_kind             each judge's mean per kind of answer (does the LLM judge rank a hallucinating
                        answer below the reference, as the oracle does?)

plus each judge's GAVIE summary (means, intervals, parse-failure and judge-error rates, failures
named by item). `judge_mode` picks how the LLM judge is read (mmrag.metrics.gavie.LLMJudge): its
graded reply (free), a number after a prefilled "Relevancy:" (scaffold), or the expectation of its
0-10 probabilities (expected, local models; the report adds the mean probability on digits). Answers are either a model's predictions (`answers_file`: JSON lines with
question_id and prediction, e.g. vqa_eval's answers_<split>.jsonl) or, by default, synthetic
candidates per item whose quality is known to differ:

    reference   the LRV reference answer (every claim true)
    corrupted   the reference with its vocabulary terms (colours, numbers, objects, facts, sides, ...)
                swapped for other values of the same kind: a fluent, hallucinating answer
    off_topic   the reference answer of an item about another image
    bare_yes    a bare "Yes." to yes/no questions (a yes-biased model)

Outputs under `output_dir`: grades.jsonl (item, kind, answer, both judges' grades and the LLM's raw
reply) and report.json, written only when every grade is in; `complete` is false when any judge
request failed (the failures are listed, one line naming the item each). The LLM judge's replies are
cached (judge.cache_dir), so a killed run resumes and a rerun sends nothing.
"""
from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mmrag.common.errors import ConfigError, DataFormatError, MissingPathError
from mmrag.common.jsonl import read_jsonl, write_json, write_jsonl
from mmrag.common.tool_config import register_tool
from mmrag.datasets.world.gavie import write_gavie
from mmrag.datasets.world.lrv_instructions import write_lrv_instructions
from mmrag.metrics.bootstrap import bootstrap_mean, paired_bootstrap
from mmrag.metrics.gavie import JUDGE_MODES, SCORE_NAMES, JudgeScore, LLMJudge, OracleJudge, summarize
from mmrag.models.text_generator import build_chat_backend

ANSWER_KINDS = ("reference", "corrupted", "off_topic", "bare_yes")
GAVIE = register_tool("gavie", {
    "world_dir": "dataset/world_small",   # its gavie/ set is written (with lrv/ first) when absent
    "split": "val",                       # val | test
    "seed": 0,                            # world seed (for writing the set) and the sample / corruption stream
    "sample": 24,                         # items drawn (0: all)
    "answer_kinds": list(ANSWER_KINDS),   # synthetic answers per item (ignored with answers_file)
    "answers_file": None,                 # JSON lines {question_id, prediction}: a model's answers instead
    "judge": {},                          # the LLM judge's backend (mmrag.models.text_generator.build_chat_backend)
    "judge_mode": "free",                 # free | scaffold | expected (mmrag.metrics.gavie.LLMJudge)
    "judge_max_tokens": 96,
    "judge_temperature": 0.0,
    "min_digit_mass": 0.0,                # mode expected: a grade with less probability on digits is a failure
    "answers_per_prompt": 1,              # answers graded in one judge prompt (GAVIE grades several at once)
    "n_boot": 2000,
    "output_dir": "output/gavie_small",
}, choices={"split": ("val", "test"), "judge_mode": JUDGE_MODES}, open_keys=("judge",))


# ----------------------------------------------------------------------------- the items and answers
def load_items(world_dir: Path, split: str, seed: int) -> List[Dict[str, Any]]:
    """The world's GAVIE items of `split`, writing lrv/ and gavie/ first when absent."""
    path = world_dir / "gavie" / f"items_{split}.jsonl"
    if not path.is_file():
        if not (world_dir / "entities.json").is_file():
            raise MissingPathError(f"world_dir {world_dir} is not a world folder (no entities.json): "
                                   "make one with mmrag-make-world")
        if not (world_dir / "lrv" / f"items_{split}.jsonl").is_file():
            write_lrv_instructions(world_dir, seed)
        write_gavie(world_dir, seed)
    return read_jsonl(path)


def _vocabulary_terms(vocabulary: Mapping[str, Any]) -> List[List[str]]:
    """Groups of interchangeable terms: a corrupted answer swaps a term for another of its group."""
    groups = [list(vocabulary["colours"]), [p for p in vocabulary["patterns"] if p != "plain"],
              list(vocabulary["shapes"]), [w for w in vocabulary["numbers"] if w != "zero"],
              list(vocabulary["generic"]) + list(vocabulary["categories"]), ["left", "right"]]
    names_by_category: Dict[str, List[str]] = {}
    for name, category in vocabulary["names"].items():
        names_by_category.setdefault(category, []).append(name)
    groups += [sorted(v) for v in names_by_category.values()]
    groups += [list(v) for v in vocabulary["fact_values"].values()]
    return [g for g in groups if len(g) > 1]


def corrupt(answer: str, groups: Sequence[Sequence[str]], rng: random.Random) -> str:
    """`answer` with every vocabulary term replaced by another term of its group (longest terms first)."""
    found: Dict[str, Sequence[str]] = {}
    for group in groups:
        for term in group:
            if re.search(rf"(?<![\w-]){re.escape(term)}(?![\w-])", answer, re.I):
                found.setdefault(term.lower(), group)
    if not found:
        return answer
    swap = {term: rng.choice([t for t in group if t.lower() != term]) for term, group in sorted(found.items())}
    pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(t)}(?![\w-])" for t in sorted(swap, key=len, reverse=True)),
                         re.I)
    return pattern.sub(lambda m: swap[m.group(0).lower()], answer)


def synthetic_answers(items: Sequence[Mapping[str, Any]], kinds: Sequence[str], vocabulary: Mapping[str, Any],
                      seed: int) -> List[Dict[str, Any]]:
    """[{item index, kind, answer}] for each item and kind (bare_yes: yes/no questions only)."""
    unknown = sorted(set(kinds) - set(ANSWER_KINDS))
    if unknown:
        raise ConfigError(f"answer_kinds: unknown {unknown}; expected some of {', '.join(ANSWER_KINDS)}")
    rng = random.Random(f"{seed}:gavie-answers")
    groups = _vocabulary_terms(vocabulary)
    out = []
    for i, item in enumerate(items):
        others = [j for j, other in enumerate(items) if other["image_id"] != item["image_id"]]
        for kind in kinds:
            if kind == "reference":
                answer = item["answer"]
            elif kind == "corrupted":
                answer = corrupt(item["answer"], groups, rng)
            elif kind == "off_topic":
                if not others:
                    continue
                answer = items[rng.choice(others)]["answer"]
            else:
                if not re.match(r"^(is|are|can|does|do|was|were|has|have)\b", item["question"].lower()) \
                        or " or " in item["question"]:
                    continue
                answer = "Yes."
            out.append({"item": i, "kind": kind, "answer": answer})
    return out


def model_answers(path: Path, items: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """A model's predictions for the sampled items (kind 'model'); every sampled item must have one."""
    if not path.is_file():
        raise MissingPathError(f"answers_file {path} does not exist")
    by_id = {}
    for n, row in enumerate(read_jsonl(path), start=1):
        if "question_id" not in row or "prediction" not in row:
            raise DataFormatError(f"{path}:{n}: expected question_id and prediction")
        by_id[str(row["question_id"])] = row["prediction"]
    missing = [it["question_id"] for it in items if str(it["question_id"]) not in by_id]
    if missing:
        raise DataFormatError(f"{path}: no prediction for {len(missing)} sampled items, e.g. {missing[0]}")
    return [{"item": i, "kind": "model", "answer": by_id[str(it["question_id"])]} for i, it in enumerate(items)]


# ----------------------------------------------------------------------------- agreement statistics
def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when either side is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_interval(x: Sequence[float], y: Sequence[float], n_boot: int, seed: int) -> Dict[str, Any]:
    """{"rho", "low", "high", "n", "degenerate"}: percentile bootstrap over answers; resamples in which
    a judge gave one value only have no correlation and are left out (counted as `degenerate`)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    rx, ry = _ranks(x[idx]), _ranks(y[idx])
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    ok = denom > 0
    rhos = (rx * ry).sum(axis=1)[ok] / denom[ok]
    low, high = (np.percentile(rhos, [2.5, 97.5]) if rhos.size else (np.nan, np.nan))
    return {"rho": spearman(x, y), "low": float(low), "high": float(high), "n": int(x.size),
            "degenerate": int((~ok).sum())}


def agreement(oracle: Sequence[JudgeScore], llm: Sequence[JudgeScore], n_boot: int, seed: int) -> Dict[str, Any]:
    """Per score: Spearman, mean absolute difference and bias over the answers both judges graded."""
    out: Dict[str, Any] = {}
    for name in SCORE_NAMES:
        pairs = [(getattr(o, name), getattr(m, name)) for o, m in zip(oracle, llm)
                 if getattr(o, name) is not None and getattr(m, name) is not None]
        if len(pairs) < 3:
            out[name] = {"n": len(pairs), "note": "fewer than 3 answers graded by both judges"}
            continue
        ox, mx = [p[0] for p in pairs], [p[1] for p in pairs]
        out[name] = {"n": len(pairs), "spearman": spearman_interval(ox, mx, n_boot, seed),
                     "mean_abs_diff": bootstrap_mean([abs(a - b) for a, b in pairs], n_boot=n_boot, seed=seed),
                     "bias": paired_bootstrap(mx, ox, n_boot=n_boot, seed=seed)}
    return out


def by_kind(answers: Sequence[Mapping[str, Any]], grades: Sequence[JudgeScore]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for kind in sorted({a["kind"] for a in answers}):
        chosen = [g for a, g in zip(answers, grades) if a["kind"] == kind]
        out[kind] = {"n": len(chosen)}
        for name in SCORE_NAMES:
            values = [getattr(g, name) for g in chosen if getattr(g, name) is not None]
            out[kind][name] = sum(values) / len(values) if values else None
    return out


# ----------------------------------------------------------------------------- the run
def grade_in_prompts(judge, items: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]],
                     per_prompt: int) -> Tuple[List[JudgeScore], List[Optional[str]]]:
    """Grades in answer order; answers of the same item share a prompt, `per_prompt` at a time."""
    groups: List[List[int]] = []
    for k, a in enumerate(answers):
        if groups and answers[groups[-1][0]]["item"] == a["item"] and len(groups[-1]) < per_prompt:
            groups[-1].append(k)
        else:
            groups.append([k])
    results = judge.judge([items[answers[g[0]]["item"]] for g in groups],
                          [[answers[k]["answer"] for k in g] for g in groups])
    replies = getattr(judge, "replies", None) or [None] * len(groups)
    grades: List[Optional[JudgeScore]] = [None] * len(answers)
    raw: List[Optional[str]] = [None] * len(answers)
    for g, scores, reply in zip(groups, results, replies):
        for k, score in zip(g, scores):
            grades[k], raw[k] = score, reply
    return grades, raw  # type: ignore[return-value]


def _grade_dict(g: JudgeScore) -> Dict[str, Any]:
    return {"relevancy": g.relevancy, "accuracy": g.accuracy, "reasons": [g.relevancy_reason, g.accuracy_reason],
            "failure": g.failure}


def run_gavie(cfg: Dict[str, Any], log=print) -> Dict[str, Any]:
    """Grade the sampled answers with the oracle and the LLM judge; write grades.jsonl and report.json."""
    if not cfg["judge"]:
        raise ConfigError("gavie: config key 'judge' is empty: give the LLM judge's backend, e.g. "
                          "judge={type: local, path: assets/smollm2-135m-instruct}")
    if int(cfg["answers_per_prompt"]) < 1:
        raise ConfigError(f"gavie: answers_per_prompt should be >= 1, got {cfg['answers_per_prompt']}")
    world_dir, out_dir = Path(cfg["world_dir"]), Path(cfg["output_dir"])
    items = load_items(world_dir, cfg["split"], cfg["seed"])
    rng = random.Random(f"{cfg['seed']}:gavie-sample")
    if cfg["sample"] and cfg["sample"] < len(items):
        items = [items[i] for i in sorted(rng.sample(range(len(items)), int(cfg["sample"])))]
    vocabulary = json.loads(Path(items[0]["vocabulary"]).read_text(encoding="utf-8"))
    answers = (model_answers(Path(cfg["answers_file"]), items) if cfg["answers_file"]
               else synthetic_answers(items, cfg["answer_kinds"], vocabulary, cfg["seed"]))
    log(f"gavie: {len(items)} items of {world_dir} ({cfg['split']}), {len(answers)} answers")
    oracle_grades, _ = grade_in_prompts(OracleJudge(vocabulary), items, answers, 1)
    llm = LLMJudge(build_chat_backend(cfg["judge"], where="judge"), max_tokens=int(cfg["judge_max_tokens"]),
                   temperature=float(cfg["judge_temperature"]), mode=cfg["judge_mode"],
                   min_digit_mass=float(cfg["min_digit_mass"]))
    start = time.time()
    llm_grades, replies = grade_in_prompts(llm, items, answers, int(cfg["answers_per_prompt"]))
    seconds = time.time() - start
    digit_mass = llm.digit_mass if cfg["judge_mode"] == "expected" else []
    names = [f"{items[a['item']]['question_id']} ({a['kind']})" for a in answers]
    write_jsonl(out_dir / "grades.jsonl", [
        {"question_id": items[a["item"]]["question_id"], "task": items[a["item"]].get("task"), "kind": a["kind"],
         "question": items[a["item"]]["question"], "answer": a["answer"], "oracle": _grade_dict(o),
         "llm": _grade_dict(m), "llm_reply": r}
        for a, o, m, r in zip(answers, oracle_grades, llm_grades, replies)])
    llm_summary = summarize(llm_grades, names, seed=cfg["seed"])
    report = {
        "complete": llm_summary["judge_errors"] == 0,
        "world_dir": str(world_dir), "split": cfg["split"], "items": len(items), "answers": len(answers),
        "judge": cfg["judge"], "judge_mode": cfg["judge_mode"], "judge_seconds": round(seconds, 1),
        "digit_mass": bootstrap_mean(digit_mass, seed=cfg["seed"]) if digit_mass else None,
        "oracle": summarize(oracle_grades, names, seed=cfg["seed"]), "llm": llm_summary,
        "agreement": agreement(oracle_grades, llm_grades, int(cfg["n_boot"]), cfg["seed"]),
        "by_kind": {"oracle": by_kind(answers, oracle_grades), "llm": by_kind(answers, llm_grades)},
        "config": cfg,
    }
    write_json(out_dir / "report.json", report)
    report["out"] = str(out_dir / "report.json")
    return report


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def report_table(report: Mapping[str, Any]) -> str:
    """A markdown table of the agreement and each judge's means, for the console and docs/RESULTS.md."""
    lines = ["| score | oracle mean [95%] | LLM mean [95%] | Spearman [95%] | mean abs diff [95%] | "
             "bias LLM - oracle [95%] | n both |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in SCORE_NAMES:
        o, m, a = report["oracle"][name], report["llm"][name], report["agreement"][name]
        judged = "spearman" in a
        rho = a["spearman"] if judged else {}
        mad = a["mean_abs_diff"] if judged else {}
        bias = a["bias"] if judged else {}
        lines.append(
            f"| {name} | {_fmt(o['mean'])} [{_fmt(o['low'])}, {_fmt(o['high'])}] | {_fmt(m['mean'])} "
            f"[{_fmt(m['low'])}, {_fmt(m['high'])}] | {_fmt(rho.get('rho'))} [{_fmt(rho.get('low'))}, "
            f"{_fmt(rho.get('high'))}] | {_fmt(mad.get('mean'))} [{_fmt(mad.get('low'))}, {_fmt(mad.get('high'))}] | "
            f"{_fmt(bias.get('diff'))} [{_fmt(bias.get('low'))}, {_fmt(bias.get('high'))}]"
            f"{' within noise' if bias.get('within_noise') else ''} | {a['n']} |")
    llm = report["llm"]
    mass = report.get("digit_mass")
    lines.append(f"\nLLM judge ({report.get('judge_mode', 'free')}): parse failures {llm['parse_failures']}/{llm['num']} "
                 f"({100 * llm['parse_failure_rate']:.0f}%), judge errors {llm['judge_errors']}; "
                 f"oracle: accuracy unscored (no checkable claim) {report['oracle']['accuracy_unscored']}/"
                 f"{report['oracle']['num']}" + (f"; mean digit mass {mass['mean']:.2f}" if mass else ""))
    kinds = report["by_kind"]
    lines.append("\n| answer kind | n | oracle relevancy | oracle accuracy | LLM relevancy | LLM accuracy |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for kind, o in kinds["oracle"].items():
        m = kinds["llm"][kind]
        lines.append(f"| {kind} | {o['n']} | {_fmt(o['relevancy'], 1)} | {_fmt(o['accuracy'], 1)} | "
                     f"{_fmt(m['relevancy'], 1)} | {_fmt(m['accuracy'], 1)} |")
    return "\n".join(lines)
