"""The SURf report (docs/RESULTS_SURF.md): tables computed from the pipeline's outputs only.

Every number printed here is read from an output file of a stage or computed from one (the
name-only-rule analysis: mmrag.pipelines.analysis); where an output is missing the row says so.
Hand-written notes below NOTES_MARKER in the existing report are kept.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from mmrag.common.jsonl import read_jsonl
from mmrag.pipelines.analysis import NameOnlyRule, name_only_table
from mmrag.pipelines.stages import Stage, stage_report
from mmrag.pipelines.surf_layout import BASE_OUT, OUT, POPE_SPLITS, WORLD, YESNO

NOTES_MARKER = "<!-- Hand-written notes below: the SURf pipeline keeps everything after this line. -->"
OLD_MARKERS = ("<!-- Hand-written notes below: scripts/run_surf.py keeps everything after this line. -->",)
POPE_ROWS = [("pope_base_none", "base model, zero-shot"), ("pope_base_rag", "base model + vanilla RAG"),
             ("pope_surf_rag", "SURf-trained + RAG"), ("pope_surf_none", "SURf-trained, no retrieval")]
VQA_ROWS = [("vqa_base_none", "base model, no retrieval"), ("vqa_base_rag", "base model + RAG"),
            ("vqa_surf_none", "SURf-trained, no retrieval"), ("vqa_surf_rag", "SURf-trained + RAG")]


def load_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pope_table(root: Path) -> List[str]:
    lines = ["| model | " + " | ".join(f"{s} acc / F1 / yes%" for s in POPE_SPLITS) + " |", "|---|---|---|---|"]
    for name, label in POPE_ROWS:
        res = load_json(root / OUT / name / "results.json")
        cells = [f"{pct(res[s]['accuracy'])} / {pct(res[s]['f1'])} / {pct(res[s]['yes_ratio'])}" if res and s in res
                 else "not run" for s in POPE_SPLITS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def question_of(row: Mapping) -> str:
    """The question of an answers row: its `question`, else the prompt's last line without image tokens."""
    text = row.get("question") or row.get("prompt", "").strip().splitlines()[-1]
    return text.replace("<image>", "").strip()


def family(question: str) -> str:
    """A question's first two words ('How many', 'What colour'): its family in the report."""
    return " ".join(question.split()[:2])


def vqa_accuracies(rows: Sequence[Mapping]) -> Dict[str, tuple]:
    """'all' and each family -> (accuracy, n), from the `correct` field of answers rows."""
    groups: Dict[str, List[bool]] = defaultdict(list)
    for row in rows:
        groups["all"].append(bool(row["correct"]))
        groups[family(question_of(row))].append(bool(row["correct"]))
    return {k: (sum(v) / len(v), len(v)) for k, v in groups.items()}


def vqa_table(root: Path) -> List[str]:
    answers = {name: root / OUT / name / "answers_test.jsonl" for name, _ in VQA_ROWS}
    results = {name: vqa_accuracies(read_jsonl(p)) for name, p in answers.items() if p.is_file()}
    families = sorted({f for r in results.values() for f in r if f != "all"})
    lines = ["| model | all | " + " | ".join(families) + " |", "|---" * (len(families) + 2) + "|"]
    for name, label in VQA_ROWS:
        r = results.get(name)
        if r is None:
            lines.append(f"| {label} | not run |" + " |" * len(families))
            continue
        cells = [pct(r[f][0]) if f in r else "-" for f in families]
        lines.append(f"| {label} | {pct(r['all'][0])} (n={r['all'][1]}) | " + " | ".join(cells) + " |")
    return lines


def evaluated_pope_questions(root: Path, max_per_split: int) -> Dict[str, List[dict]]:
    """The POPE rows the evaluations answered: those of the zero-shot answers file when present, else
    the first `max_per_split` of each split file (the evaluations take the first N)."""
    out = {}
    for split in POPE_SPLITS:
        rows = read_jsonl(root / WORLD / "pope" / f"{split}.jsonl")
        answered = root / OUT / "pope_base_none" / f"answers_{split}.jsonl"
        if answered.is_file():
            ids = {r["question_id"] for r in read_jsonl(answered)}
            rows = [r for r in rows if r["question_id"] in ids]
        out[split] = rows[:max_per_split] if max_per_split else rows
    return out


def model_predictions(root: Path, questions: Mapping[str, List[dict]]) -> Dict[str, Dict[str, List[str]]]:
    """row label -> split -> the model's answers to `questions` (in order), for the rows that ran."""
    preds: Dict[str, Dict[str, List[str]]] = {}
    for name, label in POPE_ROWS:
        for split, rows in questions.items():
            path = root / OUT / name / f"answers_{split}.jsonl"
            if path.is_file():
                by_id = {r["question_id"]: r["prediction"] for r in read_jsonl(path)}
                if all(q["question_id"] in by_id for q in rows):
                    preds.setdefault(label, {})[split] = [by_id[q["question_id"]] for q in rows]
    return preds


def name_only_section(root: Path, max_per_split: int) -> List[str]:
    yesno = root / YESNO.format(split="train")
    if not yesno.is_file() or not (root / WORLD / "pope").is_dir():
        return ["not run yet (needs the training yes/no file and the POPE questions)"]
    rule = NameOnlyRule.fit(json.loads(yesno.read_text()))
    questions = evaluated_pope_questions(root, max_per_split)
    return name_only_table(rule, questions, model_predictions(root, questions))


def surf_data_stats(root: Path) -> Dict:
    """Counts of the construction stages: questions, re-answers, helpful share, mixed questions, samples."""
    from mmrag.surf.stage_io import read_stage

    work = root / OUT / "surf_data"
    if not (work / "surf_train.json").is_file():
        return {}
    evaluated, grouped, initial = read_stage(work, "evaluated"), read_jsonl(work / "grouped.jsonl"), read_stage(work, "initial")
    return {"questions": len(initial), "reanswers": len(evaluated),
            "helpful_share": round(sum(r["label"] for r in evaluated) / max(1, len(evaluated)), 3),
            "evaluators": sorted({r["evaluator"] for r in evaluated}),
            "mixed_questions": sum(len({it["label"] for it in g["items"]}) == 2 for g in grouped),
            "samples": len(json.loads((work / "surf_train.json").read_text()))}


def input_lines(root: Path) -> List[str]:
    base = load_json(root / BASE_OUT / "metrics.json", {}).get("llava_instruct")
    clip = load_json(root / OUT / "db" / "tiny_clip_report.json", {})
    captions = load_json(root / OUT / "db_captions.json", [])
    log = root / OUT / "surf_model" / "metrics.jsonl"
    surf_log = read_jsonl(log) if log.is_file() else []
    lines = [f"- Base model's own evaluation (`{BASE_OUT}/metrics.json`): " +
             (f"short-answer accuracy {pct(base['short_answer_accuracy'])}% on {base['n_short']} short answers" if base
              else "not run yet"),
             f"- Database: {len(captions)} training images with their captions (no test image: checked by the "
             f"db_captions stage); tiny CLIP: {json.dumps(clip.get('after', {})) if clip else 'not run yet'} "
             "(recall on held-out pairs after training)",
             f"- SURf data construction: `{json.dumps(surf_data_stats(root))}`"]
    if surf_log:
        lines.append(f"- SURf training: {len(surf_log)} logged steps, loss {surf_log[0]['loss']:.3f} -> {surf_log[-1]['loss']:.3f}")
    return lines


def kept_notes(target: Path) -> List[str]:
    """The hand-written part of an existing report (from the marker on), or just the marker."""
    text = target.read_text() if target.is_file() else ""
    for marker in (NOTES_MARKER, *OLD_MARKERS):
        if marker in text:
            return [NOTES_MARKER + text.split(marker, 1)[1].rstrip("\n")]
    return [NOTES_MARKER]


def write_report(root: Path, stages: Sequence[Stage], opt, target: Optional[Path] = None) -> Path:
    """Print the tables and write them (plus the kept notes) to docs/RESULTS_SURF.md."""
    text = "\n".join([
        "## SURf on the small world: POPE and knowledge-VQA with retrieval", "",
        "Made by `python scripts/run_surf.py` (stages, commands and seconds at the end; "
        f"options: `{json.dumps(vars(opt))}`).", "",
        "### POPE (accuracy / F1 / yes-ratio, %; yes = positive class, official scoring)", "", *pope_table(root), "",
        "### Knowledge-VQA (the world's test VQA items, exact match, %)", "", *vqa_table(root), "",
        "### Name-only rule (mmrag.pipelines.analysis: the object's name alone, training yes/no statistics)", "",
        *name_only_section(root, opt.pope_max), "",
        "### Inputs of the tables", "", *input_lines(root), "",
        "### Stages, commands and wall-clock seconds (latest run of each)", "", *stage_report(stages, root / OUT), "",
    ])
    target = target or root / "docs" / "RESULTS_SURF.md"
    text = "\n".join([text, *kept_notes(target), ""])
    print(text)
    target.write_text(text)
    return target
