"""The SURf report (docs/RESULTS_SURF.md): tables computed from the pipeline's outputs only.

Every number printed here is read from an output file of a stage or computed from one (the
name-only-rule analysis and what the RAG rows' retrieved neighbours hold: mmrag.pipelines.analysis);
where an output is missing the row says so.
Hand-written notes below NOTES_MARKER in the existing report are kept.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from mmrag.common.jsonl import read_jsonl
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.pipelines.analysis import (NameOnlyRule, accuracy_by_neighbours, correct_by_question, image_objects,
                                     name_only_table, neighbour_accuracy_table, neighbour_presence, neighbour_table,
                                     rag_neighbours, recorded_neighbours_agree)
from mmrag.pipelines.stages import Stage, stage_report
from mmrag.pipelines.surf_layout import BASE_OUT, INSTANCES_TRAIN, OUT, POPE_SPLITS, RAG_K, WORLD, YESNO

NOTES_MARKER = "<!-- Hand-written notes below: the SURf pipeline keeps everything after this line. -->"
OLD_MARKERS = ("<!-- Hand-written notes below: scripts/run_surf.py keeps everything after this line. -->",)
POPE_ROWS = [("pope_base_none", "base model, zero-shot"), ("pope_base_rag", "base model + vanilla RAG"),
             ("pope_surf_rag", "SURf-trained + RAG"), ("pope_surf_none", "SURf-trained, no retrieval")]
# the headline differences (minuend row, subtrahend row), each over the questions both answered
DIFFERENCES = [("pope_surf_rag", "pope_base_rag", "SURf+RAG minus vanilla RAG"),
               ("pope_base_rag", "pope_base_none", "vanilla RAG minus zero-shot"),
               ("pope_surf_rag", "pope_base_none", "SURf+RAG minus zero-shot"),
               ("pope_surf_none", "pope_base_none", "SURf no retrieval minus zero-shot")]
VQA_ROWS = [("vqa_base_none", "base model, no retrieval"), ("vqa_base_rag", "base model + RAG"),
            ("vqa_surf_none", "SURf-trained, no retrieval"), ("vqa_surf_rag", "SURf-trained + RAG")]


def load_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pope_rows(controls: Sequence[str] = ()) -> List[tuple]:
    """(stage, label) of every POPE row: the four models, then the zero-shot base under each image control."""
    return POPE_ROWS + [(f"pope_base_{c}", f"base model, zero-shot, image {c}") for c in controls]


def pope_table(root: Path, out: str = OUT, controls: Sequence[str] = ()) -> List[str]:
    lines = ["| model | " + " | ".join(f"{s} acc / F1 / yes%" for s in POPE_SPLITS) + " |", "|---|---|---|---|"]
    for name, label in pope_rows(controls):
        res = load_json(root / out / name / "results.json")
        cells = [f"{pct(res[s]['accuracy'])} / {pct(res[s]['f1'])} / {pct(res[s]['yes_ratio'])}" if res and s in res
                 else "not run" for s in POPE_SPLITS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paired_differences(root: Path, out: str = OUT, controls: Sequence[str] = ()) -> Dict[str, Dict[str, dict]]:
    """label -> split -> `paired_bootstrap` of accuracy (minuend row minus subtrahend row) over the
    questions both rows answered; the image gain of the zero-shot base over each control as well.
    Comparisons whose answers are missing are left out."""
    pairs = DIFFERENCES + [("pope_base_none", f"pope_base_{c}", f"zero-shot minus image {c} (image gain)") for c in controls]
    found: Dict[str, Dict[str, dict]] = {}
    for a, b, label in pairs:
        for split in POPE_SPLITS:
            files = [root / out / row / f"answers_{split}.jsonl" for row in (a, b)]
            if not all(f.is_file() for f in files):
                continue
            x, y = (correct_by_question(f) for f in files)
            ids = [q for q in x if q in y]
            if ids:
                found.setdefault(label, {})[split] = paired_bootstrap([x[q] for q in ids], [y[q] for q in ids])
    return found


def differences_table(differences: Mapping[str, Mapping[str, dict]]) -> List[str]:
    if not differences:
        return ["not run yet (needs the answers files of both rows)"]
    lines = ["| difference | " + " | ".join(POPE_SPLITS) + " |", "|---|---|---|---|"]
    for label, by_split in differences.items():
        cells = [f"{format_difference(by_split[s])} (n={by_split[s]['n']})" if s in by_split else "not run"
                 for s in POPE_SPLITS]
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


def evaluated_pope_questions(root: Path, max_per_split: int, out: str = OUT,
                             pope: str = f"{WORLD}/pope") -> Dict[str, List[dict]]:
    """The POPE rows the evaluations answered: those of the zero-shot answers file when present, else
    the first `max_per_split` of each split file (the evaluations take the first N)."""
    found = {}
    for split in POPE_SPLITS:
        rows = read_jsonl(root / pope / f"{split}.jsonl")
        answered = root / out / "pope_base_none" / f"answers_{split}.jsonl"
        if answered.is_file():
            ids = {r["question_id"] for r in read_jsonl(answered)}
            rows = [r for r in rows if r["question_id"] in ids]
        found[split] = rows[:max_per_split] if max_per_split else rows
    return found


def model_predictions(root: Path, questions: Mapping[str, List[dict]], out: str = OUT,
                      controls: Sequence[str] = ()) -> Dict[str, Dict[str, List[str]]]:
    """row label -> split -> the model's answers to `questions` (in order), for the rows that ran."""
    preds: Dict[str, Dict[str, List[str]]] = {}
    for name, label in pope_rows(controls):
        for split, rows in questions.items():
            path = root / out / name / f"answers_{split}.jsonl"
            if path.is_file():
                by_id = {r["question_id"]: r["prediction"] for r in read_jsonl(path)}
                if all(q["question_id"] in by_id for q in rows):
                    preds.setdefault(label, {})[split] = [by_id[q["question_id"]] for q in rows]
    return preds


def name_only_section(root: Path, max_per_split: int, out: str = OUT, pope: str = f"{WORLD}/pope",
                      controls: Sequence[str] = ()) -> List[str]:
    yesno = root / YESNO.format(split="train")
    if not yesno.is_file() or not (root / pope).is_dir():
        return ["not run yet (needs the training yes/no file and the POPE questions)"]
    rule = NameOnlyRule.fit(json.loads(yesno.read_text()))
    questions = evaluated_pope_questions(root, max_per_split, out, pope)
    return name_only_table(rule, questions, model_predictions(root, questions, out, controls))


def neighbour_inputs(root: Path, max_per_split: int, out: str = OUT, pope: str = f"{WORLD}/pope",
                     k: int = RAG_K) -> Optional[tuple]:
    """(split -> the POPE questions the evaluations answered, split -> their k neighbours as the RAG
    rows retrieve them from `<out>/db`, training image -> objects); None when the database, the
    training annotations or the questions are missing."""
    database, instances = root / out / "db", root / INSTANCES_TRAIN
    if not (database / "manifest.json").is_file() or not instances.is_file() or not (root / pope).is_dir():
        return None
    questions = evaluated_pope_questions(root, max_per_split, out, pope)
    neighbours = {split: rag_neighbours(rows, root / WORLD / "images", database, k)
                  for split, rows in questions.items()}
    return questions, neighbours, image_objects(json.loads(instances.read_text()))


def neighbour_presence_by_split(root: Path, max_per_split: int, out: str = OUT, pope: str = f"{WORLD}/pope",
                                k: int = RAG_K) -> Dict[str, Dict[str, dict]]:
    """split -> gold label -> mmrag.pipelines.analysis.neighbour_presence ({} without inputs)."""
    inputs = neighbour_inputs(root, max_per_split, out, pope, k)
    return presence_of(inputs, k) if inputs else {}


def presence_of(inputs: tuple, k: int = RAG_K) -> Dict[str, Dict[str, dict]]:
    questions, neighbours, objects = inputs
    return {split: neighbour_presence(rows, neighbours[split], objects, k) for split, rows in questions.items()}


RAG_DIFFERENCE = ("base model + vanilla RAG", "base model, zero-shot", "vanilla RAG minus zero-shot")


def neighbour_accuracy(root: Path, inputs: tuple, out: str = OUT) -> Dict[str, dict]:
    """split -> mmrag.pipelines.analysis.accuracy_by_neighbours of the four model rows that ran
    (vanilla RAG minus zero-shot with a paired interval), for the splits with answers."""
    questions, neighbours, objects = inputs
    predictions = model_predictions(root, questions, out)
    found = {}
    for split, rows in questions.items():
        answers = {label: by_split[split] for label, by_split in predictions.items() if split in by_split}
        if answers:
            found[split] = accuracy_by_neighbours(rows, neighbours[split], objects, answers, RAG_DIFFERENCE[:2])
    return found


def recorded_agreement(root: Path, inputs: tuple, out: str = OUT) -> Dict[str, tuple]:
    """split -> (questions whose recomputed neighbours equal those recorded by the vanilla RAG row, questions)."""
    questions, neighbours, _ = inputs
    found = {}
    for split, rows in questions.items():
        path = root / out / "pope_base_rag" / f"answers_{split}.jsonl"
        if path.is_file():
            found[split] = recorded_neighbours_agree(neighbours[split], rows, read_jsonl(path))
    return found


def neighbour_section(presence: Mapping[str, Mapping[str, dict]], k: int = RAG_K,
                      accuracy: Optional[Mapping[str, dict]] = None,
                      recorded: Optional[Mapping[str, tuple]] = None) -> List[str]:
    if not presence:
        return ["not run yet (needs the database, the training annotations and the POPE questions)"]
    lines = neighbour_table(presence, k)
    if accuracy:
        models = [label for _, label in POPE_ROWS if any(label in t[g][h]["accuracy"] for t in accuracy.values()
                                                         for g in ("yes", "no") for h in ("holds", "lacks"))]
        lines += ["", "POPE accuracy on the questions where at least one neighbour holds the asked object and where "
                  "none does (95% paired bootstrap for the difference):", "",
                  *neighbour_accuracy_table(accuracy, models, RAG_DIFFERENCE[2])]
    if recorded:
        lines += ["", "Neighbours recomputed here equal (ids, in order) those the vanilla RAG row recorded: " +
                  ", ".join(f"{split} {same} of {n}" for split, (same, n) in recorded.items()) + "."]
    return lines


def surf_data_stats(root: Path, out: str = OUT) -> Dict:
    """Counts of the construction stages: questions, re-answers, helpful share, mixed questions, samples."""
    from mmrag.surf.stage_io import read_stage

    work = root / out / "surf_data"
    if not (work / "surf_train.json").is_file():
        return {}
    evaluated, grouped, initial = read_stage(work, "evaluated"), read_jsonl(work / "grouped.jsonl"), read_stage(work, "initial")
    return {"questions": len(initial), "reanswers": len(evaluated),
            "helpful_share": round(sum(r["label"] for r in evaluated) / max(1, len(evaluated)), 3),
            "evaluators": sorted({r["evaluator"] for r in evaluated}),
            "mixed_questions": sum(len({it["label"] for it in g["items"]}) == 2 for g in grouped),
            "samples": len(json.loads((work / "surf_train.json").read_text()))}


def input_lines(root: Path, out: str = OUT, base_line: Optional[str] = None) -> List[str]:
    base = load_json(root / BASE_OUT / "metrics.json", {}).get("llava_instruct")
    clip = load_json(root / out / "db" / "tiny_clip_report.json", {})
    captions = load_json(root / out / "db_captions.json", [])
    log = root / out / "surf_model" / "metrics.jsonl"
    surf_log = read_jsonl(log) if log.is_file() else []
    lines = [base_line or f"- Base model's own evaluation (`{BASE_OUT}/metrics.json`): " +
             (f"short-answer accuracy {pct(base['short_answer_accuracy'])}% on {base['n_short']} short answers" if base
              else "not run yet"),
             f"- Database: {len(captions)} training images with their captions (no test image: checked by the "
             f"db_captions stage); tiny CLIP: {json.dumps(clip.get('after', {})) if clip else 'not run yet'} "
             "(recall on held-out pairs after training)",
             f"- SURf data construction: `{json.dumps(surf_data_stats(root, out))}`"]
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
    """Print the tables and write them (plus the kept notes) to `target` (default docs/RESULTS_SURF.md);
    a report outside docs/ gets a report.json beside it (every POPE result and paired difference)."""
    out = getattr(opt, "out", OUT)
    controls = tuple(getattr(opt, "image_controls", ()))
    base = getattr(opt, "base", "tiny")
    pope = getattr(opt, "pope_folder", f"{WORLD}/pope")
    differences = paired_differences(root, out, controls)
    inputs = neighbour_inputs(root, opt.pope_max, out, pope)
    neighbours = presence_of(inputs) if inputs else {}
    by_neighbours = neighbour_accuracy(root, inputs, out) if inputs else {}
    recorded = recorded_agreement(root, inputs, out) if inputs else {}
    if base == "tiny" and not getattr(opt, "base_checkpoint", None):
        title, base_line = "SURf on the small world: POPE and knowledge-VQA with retrieval", None
    else:
        title = f"SURf on the small world, base model `{base}`: POPE with retrieval"
        base_line = f"- Base model: `{base}` from `{opt.base_ckpt}` (config `{opt.setting.train_cfg}`)"
    vqa = ["### Knowledge-VQA (the world's test VQA items, exact match, %)", "", *vqa_table(root), ""] \
        if out == OUT else []
    text = "\n".join([
        f"## {title}", "",
        "Made by `python scripts/run_surf.py` (stages, commands and seconds at the end; "
        f"options: `{json.dumps(vars(opt), default=list)}`).", "",
        f"### POPE (`{pope}`; accuracy / F1 / yes-ratio, %; yes = positive class, official scoring)", "",
        *pope_table(root, out, controls), "",
        "### Paired differences of POPE accuracy (points, 95% paired bootstrap over the same questions)", "",
        *differences_table(differences), "", *vqa,
        "### Name-only rule (mmrag.pipelines.analysis: the object's name alone, training yes/no statistics)", "",
        *name_only_section(root, opt.pope_max, out, pope, controls), "",
        f"### What the {RAG_K} retrieved neighbours hold (mmrag.pipelines.analysis: the RAG rows' neighbours from "
        "the database, the asked object looked up in the COCO boxes of the training images)", "",
        *neighbour_section(neighbours, RAG_K, by_neighbours, recorded), "",
        "### Inputs of the tables", "", *input_lines(root, out, base_line), "",
        "### Stages, commands and wall-clock seconds (latest run of each)", "", *stage_report(stages, root / out), "",
    ])
    target = target or root / "docs" / "RESULTS_SURF.md"
    text = "\n".join([text, *kept_notes(target), ""])
    print(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    if target.parent != root / "docs":
        results = {name: load_json(root / out / name / "results.json") for name, _ in pope_rows(controls)}
        report = {"options": json.loads(json.dumps(vars(opt), default=list)), "pope": results,
                  "differences": differences, "neighbours": neighbours,
                  "accuracy_by_neighbours": by_neighbours, "neighbours_recorded": recorded,
                  "surf_data": surf_data_stats(root, out)}
        target.with_suffix(".json").write_text(json.dumps(report, indent=2))
    return target
