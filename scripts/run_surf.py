"""SURf on the small synthetic world, end to end (resumable: a step whose outputs exist is skipped).

    python scripts/run_surf.py                    # every step, then the tables -> docs/RESULTS_SURF.md
    python scripts/run_surf.py --force pope_base_rag surf_train   # run these steps again
    python scripts/run_surf.py --only report      # just print the tables from existing outputs

Steps (outputs under output/surf_world_small/ unless noted):
  yesno_data      balanced POPE-style yes/no questions on the world's TRAIN images (and a held-out test
                  file) -> dataset/world_small/llava/yesno_{train,test}.json, if missing
  base_train      instruction-tune the tiny model on the world's LLaVA data mixed with the yes/no
                  questions (output/llava_tiny_world)
  db              image-caption database of the world's TRAINING images (tiny CLIP trained first)
  pope_base_none  POPE zero-shot                  pope_base_rag   POPE with vanilla RAG
  surf_data       SURf data construction with the base model as answerer (a seeded subset of the
                  training conversations)
  surf_train      SURf training from the base checkpoint
  pope_surf_rag   POPE of the SURf model with RAG  pope_surf_none  ... and without retrieval
  vqa_*           the world's test VQA items (short answers), with and without retrieval
  report          the tables, commands and timings -> docs/RESULTS_SURF.md
Wall-clock seconds of every step that ran are kept in output/surf_world_small/timings.json.
A forced step first deletes its stale outputs that would otherwise be appended to or resumed from
(a training log, SURf's model-dependent construction stages).
After a change of the base model, rerun everything that depends on it:
    python scripts/run_surf.py --force base_train pope_base_none pope_base_rag surf_data surf_train \
        pope_surf_rag pope_surf_none vqa_base_none vqa_base_rag vqa_surf_rag vqa_surf_none
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere
WORLD = "dataset/world_small"
OUT = "output/surf_world_small"
BASE_CKPT = "output/llava_tiny_world/final"
YESNO = f"{WORLD}/llava/yesno_{{split}}.json"   # data_process/make_pope_style_train.py
SURF_CKPT = f"{OUT}/surf_model/final"
PY = sys.executable


@dataclass
class Step:
    name: str
    outputs: List[str]
    commands: List[List[str]]
    prepare: Optional[Callable[[argparse.Namespace], None]] = None
    stale: Sequence[str] = ()   # glob patterns (repo-relative) deleted before a forced rerun


# ----------------------------------------------------------------------------- input preparation
def write_db_captions(args: argparse.Namespace) -> None:
    """The world's image-caption pairs of the images used by the training conversations only, so
    no test (POPE / VQA) image or caption is in the database."""
    train_images = {item["image"] for item in json.loads((REPO / WORLD / "llava/instruct_train.json").read_text()) if item.get("image")}
    pairs = [p for p in json.loads((REPO / WORLD / "image_captions.json").read_text()) if p["image"] in train_images]
    out = REPO / OUT / "db_captions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(pairs, indent=1))
    print(f"db captions: {len(pairs)} training images -> {out}")


def write_surf_subset(args: argparse.Namespace) -> None:
    """A seeded random subset of the training conversations for SURf data construction."""
    samples = [s for s in json.loads((REPO / WORLD / "llava/instruct_train.json").read_text()) if s.get("image")]
    keep = sorted(random.Random(args.seed).sample(range(len(samples)), min(args.surf_samples, len(samples))))
    out = REPO / OUT / "surf_data" / "llava_subset.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([samples[i] for i in keep], indent=1))
    print(f"surf subset: {len(keep)} of {len(samples)} training conversations -> {out}")


# ----------------------------------------------------------------------------- the steps
# the construction stages that hold the answering model's output (split / retrieve do not)
SURF_MODEL_STAGES = ("initial.*", "reanswer.*", "evaluated.*", "grouped.jsonl", "surf_train.json")


def remove_stale(patterns: Sequence[str]) -> None:
    """Delete the files / folders matching repo-relative glob patterns (a forced step's old outputs)."""
    for pattern in patterns:
        for path in sorted(REPO.glob(pattern)):
            print(f"  rm {path.relative_to(REPO)}")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


def eval_step(name: str, cfg: str, kind: str, extra: Sequence[str] = ()) -> Step:
    out = f"{OUT}/{name}"
    result = "pope_results.json" if kind == "pope" else "vqa_results.json"
    return Step(name, [f"{out}/{result}"], [[PY, "eval.py", "--cfg-path", cfg, f"evaluation.kind={kind}",
                                             f"run.output_dir={out}", *extra]])


def steps(args: argparse.Namespace) -> List[Step]:
    pope_extra = [f"evaluation.max_samples={args.pope_max}"] if args.pope_max else []
    vqa_extra = [f"evaluation.max_samples={args.vqa_max}"] if args.vqa_max else []
    surf_s = [PY, "data_process/surf_build_data.py", "all", f"llava={OUT}/surf_data/llava_subset.json",
              f"image_root={WORLD}", f"database={OUT}/db", f"work_dir={OUT}/surf_data", f"k={args.surf_k}",
              "batch_size=32", "answerer.target=mmrag.surf.model_answerer:from_config",
              "answerer.kwargs.cfg_path=train_configs/llava_tiny_world.yaml",
              f"answerer.kwargs.checkpoint={BASE_CKPT}", "answerer.kwargs.max_new_tokens=24",
              "answerer.kwargs.batch_size=32", "answerer.kwargs.progress=false"]
    return [
        Step("yesno_data", [YESNO.format(split="train"), YESNO.format(split="test")],
             [[PY, "data_process/make_pope_style_train.py", "--world", WORLD, "--per-image", "2",
               "--seed", str(args.seed)]]),
        Step("base_train", [f"{BASE_CKPT}/trainable.safetensors", "output/llava_tiny_world/metrics.json"],
             [[PY, "train.py", "--cfg-path", "train_configs/llava_tiny_world.yaml", "run.progress=false"]],
             stale=["output/llava_tiny_world/metrics.jsonl"]),
        Step("db", [f"{OUT}/db/manifest.json"],
             [[PY, "data_process/create_index.py", f"captions={OUT}/db_captions.json", f"image_root={WORLD}",
               "--out", f"{OUT}/db", "--train-tiny-clip", str(args.clip_steps), "--no-progress"]],
             prepare=write_db_captions),
        eval_step("pope_base_none", "eval_configs/pope_zeroshot.yaml", "pope", pope_extra),
        eval_step("pope_base_rag", "eval_configs/pope_rag.yaml", "pope", pope_extra),
        Step("surf_data", [f"{OUT}/surf_data/surf_train.json"], [surf_s], prepare=write_surf_subset,
             stale=[f"{OUT}/surf_data/{stage}" for stage in SURF_MODEL_STAGES]),
        Step("surf_train", [f"{SURF_CKPT}/trainable.safetensors"],
             [[PY, "train.py", "--cfg-path", "train_configs/surf_tiny_world.yaml", "run.progress=false"]],
             stale=[f"{OUT}/surf_model/metrics.jsonl"]),
        eval_step("pope_surf_rag", "eval_configs/pope_surf_rag.yaml", "pope", pope_extra),
        eval_step("pope_surf_none", "eval_configs/pope_surf_rag.yaml", "pope", ["evaluation.retrieval.mode=none", *pope_extra]),
        eval_step("vqa_base_none", "eval_configs/pope_zeroshot.yaml", "vqa", vqa_extra),
        eval_step("vqa_base_rag", "eval_configs/pope_rag.yaml", "vqa", vqa_extra),
        eval_step("vqa_surf_rag", "eval_configs/pope_surf_rag.yaml", "vqa", vqa_extra),
        eval_step("vqa_surf_none", "eval_configs/pope_surf_rag.yaml", "vqa", ["evaluation.retrieval.mode=none", *vqa_extra]),
    ]


def run_step(step: Step, args: argparse.Namespace, timings: Dict[str, float]) -> None:
    """Run a step unless its outputs exist (or it is forced); record its wall-clock seconds."""
    done = all((REPO / p).exists() for p in step.outputs)
    if done and step.name not in args.force:
        print(f"[skip] {step.name}: {', '.join(step.outputs)} exist")
        return
    print(f"[run ] {step.name}", flush=True)
    start = time.time()
    if done:
        remove_stale(step.stale)
    if step.prepare:
        step.prepare(args)
    for command in step.commands:
        print("  $ " + " ".join(command[1:] if command[0] == PY else command), flush=True)
        subprocess.run(command, cwd=REPO, check=True)
    timings[step.name] = round(time.time() - start, 1)
    # merge with the file: another run_surf.py process may have recorded other steps meanwhile
    save_json(REPO / OUT / "timings.json", {**load_json(REPO / OUT / "timings.json", {}), step.name: timings[step.name]})


def save_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def load_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="run just these steps (and 'report')")
    ap.add_argument("--force", nargs="*", default=[], help="run these steps even if their outputs exist")
    ap.add_argument("--clip-steps", type=int, default=200, help="tiny CLIP training steps (batch 64)")
    ap.add_argument("--surf-samples", type=int, default=200, help="training conversations for SURf construction")
    ap.add_argument("--surf-k", type=int, default=4, help="retrieved items re-answered per question")
    ap.add_argument("--pope-max", type=int, default=600, help="first questions of each POPE split (0: all 1,938)")
    ap.add_argument("--vqa-max", type=int, default=600, help="first knowledge-VQA questions (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(list(argv))


# ----------------------------------------------------------------------------- report
POPE_ROWS = [("pope_base_none", "base model, zero-shot"), ("pope_base_rag", "base model + vanilla RAG (k=2)"),
             ("pope_surf_rag", "SURf-trained + RAG (k=2)"), ("pope_surf_none", "SURf-trained, no retrieval")]
VQA_ROWS = [("vqa_base_none", "base model, no retrieval"), ("vqa_base_rag", "base model + RAG (k=2)"),
            ("vqa_surf_none", "SURf-trained, no retrieval"), ("vqa_surf_rag", "SURf-trained + RAG (k=2)")]
SPLITS = ("random", "popular", "adversarial")


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pope_table(root: Path) -> List[str]:
    lines = ["| model | " + " | ".join(f"{s} acc / F1 / yes%" for s in SPLITS) + " |", "|---|---|---|---|"]
    for name, label in POPE_ROWS:
        res = load_json(root / OUT / name / "pope_results.json")
        if res:
            cells = [f"{pct(res[s]['accuracy'])} / {pct(res[s]['f1'])} / {pct(res[s]['yes_ratio'])}" for s in SPLITS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def vqa_table(root: Path) -> List[str]:
    results = {name: load_json(root / OUT / name / "vqa_results.json") for name, _ in VQA_ROWS}
    families = sorted({f for r in results.values() if r for f in r["by_family"]})
    lines = ["| model | all | " + " | ".join(families) + " |", "|---" * (len(families) + 2) + "|"]
    for name, label in VQA_ROWS:
        r = results[name]
        if r:
            cells = [pct(r["by_family"][f]["accuracy"]) if f in r["by_family"] else "-" for f in families]
            lines.append(f"| {label} | {pct(r['accuracy'])} (n={r['num']}) | " + " | ".join(cells) + " |")
    return lines


def surf_data_stats(root: Path) -> Dict[str, float]:
    """Counts of the construction stages: questions, re-answers, helpful share, mixed questions, samples."""
    from mmrag.surf.stage_io import read_jsonl, read_stage

    work = root / OUT / "surf_data"
    if not (work / "surf_train.json").is_file():
        return {}
    evaluated, grouped = read_stage(work, "evaluated"), read_jsonl(work / "grouped.jsonl")
    initial = read_stage(work, "initial")
    return {"questions": len(initial), "reanswers": len(evaluated),
            "helpful_share": round(sum(r["label"] for r in evaluated) / max(1, len(evaluated)), 3),
            "evaluators": sorted({r["evaluator"] for r in evaluated}),
            "mixed_questions": sum(len({it["label"] for it in g["items"]}) == 2 for g in grouped),
            "all_helpful": sum(all(it["label"] for it in g["items"]) for g in grouped),
            "none_helpful": sum(not any(it["label"] for it in g["items"]) for g in grouped),
            "samples": len(json.loads((work / "surf_train.json").read_text()))}


def step_seconds(root: Path, step: Step, timings: Dict[str, float]) -> str:
    """Wall-clock seconds of a step run by this script; for a training step run by hand, the
    training loop's own elapsed time from its metrics log."""
    if step.name in timings:
        return str(timings[step.name])
    log = {"base_train": root / "output/llava_tiny_world/metrics.jsonl", "surf_train": root / OUT / "surf_model/metrics.jsonl"}.get(step.name)
    if log and log.is_file():
        return f"{json.loads(log.read_text().splitlines()[-1])['elapsed_s']:.0f} (training loop only)"
    return "-"


def world_facts(root: Path) -> Dict[str, float]:
    """Facts of the world's training conversations that explain the tables: how often a yes/no
    'Is there' question is answered 'no', and how often a colour question opens a conversation."""
    samples = json.loads((root / WORLD / "llava/instruct_train.json").read_text())
    yes_no, colour_first, colour_all = [], 0, 0
    for sample in samples:
        turns = sample["conversations"]
        for t in range(0, len(turns) - 1, 2):
            question = turns[t]["value"].replace("<image>", "").strip()
            if question.startswith("Is there"):
                yes_no.append(turns[t + 1]["value"].strip().lower())
            if question.startswith("What colour"):
                colour_all += 1
                colour_first += t == 0
    extra = load_json(root / YESNO.format(split="train"), [])
    return {"is_there_no_share": sum(a == "no" for a in yes_no) / max(1, len(yes_no)), "is_there_n": len(yes_no),
            "colour_first_turn": colour_first, "colour_n": colour_all, "yesno_n": len(extra),
            "yesno_yes_share": sum(r["conversations"][1]["value"] == "Yes." for r in extra) / max(1, len(extra)),
            "yesno_images": len({r["image"] for r in extra})}


def command_lines(root: Path, all_steps: Sequence[Step], timings: Dict[str, float]) -> List[str]:
    lines = ["| step | seconds | command |", "|---|---|---|"]
    for step in all_steps:
        for command in step.commands:
            shown = " ".join(["python", *command[1:]] if command[0] == PY else command)
            lines.append(f"| {step.name} | {step_seconds(root, step, timings)} | `{shown}` |")
    return lines


def base_summary(metrics: Dict) -> str:
    """The base model's own evaluation: the world's test conversations and the held-out yes/no questions."""
    m = metrics.get("llava_instruct")
    if not m:
        return "not run yet"
    text = f"short-answer accuracy {pct(m['short_answer_accuracy'])}% on the {m['n_short']} short answers of {m['n']}"
    yesno = metrics.get("pope_yesno")
    if yesno:
        text += (f"; held-out yes/no questions (yesno_test.json, test images, never trained on): "
                 f"{pct(yesno['short_answer_accuracy'])}% of {yesno['n_short']}")
    return text


def mixture_ratios(root: Path) -> str:
    """'llava_instruct 0.6 / pope_yesno 0.4': the base model's per-step dataset weights, from its config."""
    from omegaconf import OmegaConf

    datasets = OmegaConf.load(root / "train_configs/llava_tiny_world.yaml").datasets
    return " / ".join(f"{name} {ds.get('sample_ratio', 1.0)}" for name, ds in datasets.items())


def pope_accuracy(root: Path, name: str) -> Optional[Dict[str, float]]:
    """split -> accuracy of one POPE row, None if not run."""
    res = load_json(root / OUT / name / "pope_results.json")
    return {s: res[s]["accuracy"] for s in SPLITS} if res else None


def delta_line(root: Path, label: str, name: str, reference: str) -> str:
    """'label: +x.x / +y.y / +z.z points' (random / popular / adversarial accuracy of name - reference)."""
    new, ref = pope_accuracy(root, name), pope_accuracy(root, reference)
    if not new or not ref:
        return f"- {label}: not run yet"
    return f"- {label}: " + " / ".join(f"{100 * (new[s] - ref[s]):+.1f}" for s in SPLITS) + " accuracy points"


def reading_lines(root: Path, facts: Dict[str, float]) -> List[str]:
    """The data facts behind the tables and the accuracy differences the tables imply (computed)."""
    base = load_json(root / OUT / "pope_base_none" / "pope_results.json") or {}
    yes_ratios = ", ".join(f"{s} {pct(base[s]['yes_ratio'])}%" for s in SPLITS if s in base) or "not run yet"
    return [
        f"- The world's training conversations answer {pct(facts['is_there_no_share'])}% of their "
        f"{facts['is_there_n']} 'Is there ...?' questions with 'no'. Tuned on them alone (this pipeline's "
        "first run), the tiny model said 'no' to every POPE question (accuracy 50.0, F1 0, yes-ratio 0 on all "
        "three splits). The base model is "
        f"now tuned on them mixed with {facts['yesno_n']} POPE-style questions on {facts['yesno_images']} "
        f"training images ({pct(facts['yesno_yes_share'])}% 'Yes.'; `data_process/make_pope_style_train.py`). "
        f"Its zero-shot POPE yes-ratio: {yes_ratios}.",
        delta_line(root, "vanilla RAG vs zero-shot (base model), random / popular / adversarial", "pope_base_rag",
                   "pope_base_none"),
        delta_line(root, "SURf + RAG vs base + RAG", "pope_surf_rag", "pope_base_rag"),
        delta_line(root, "SURf without retrieval vs base zero-shot", "pope_surf_none", "pope_base_none"),
        f"- {facts['colour_first_turn']} of the {facts['colour_n']} training 'What colour' questions open a "
        "conversation (the rest follow 'How many'); asked as single turns with the image, the base model often "
        "answers them like a caption request.",
    ]


NOTES_MARKER = "<!-- Hand-written notes below: scripts/run_surf.py keeps everything after this line. -->"


def kept_notes(target: Path) -> List[str]:
    """The hand-written part of an existing report (from NOTES_MARKER on), or just the marker."""
    if target.is_file() and NOTES_MARKER in target.read_text():
        return [NOTES_MARKER + target.read_text().split(NOTES_MARKER, 1)[1].rstrip("\n")]
    return [NOTES_MARKER]


def recall_summary(clip: Dict) -> str:
    if not clip:
        return "not run yet"
    parts = []
    for direction in ("text_to_image", "image_to_image"):
        for k in ("R@1", "R@5"):
            parts.append(f"{direction} {k} {clip['before'][direction][k]:.3f} -> {clip['after'][direction][k]:.3f}")
    return "; ".join(parts)


def write_report(root: Path, out: str, all_steps: Sequence[Step], timings: Dict[str, float], args: Dict) -> Path:
    """Print the tables and write docs/RESULTS_SURF.md from the result files that exist."""
    base_eval = load_json(root / "output/llava_tiny_world/metrics.json", {})
    clip = load_json(root / OUT / "db" / "tiny_clip_report.json", {})
    stats = surf_data_stats(root)
    facts = world_facts(root)
    surf_log = [json.loads(x) for x in (root / OUT / "surf_model/metrics.jsonl").read_text().splitlines()] \
        if (root / OUT / "surf_model/metrics.jsonl").is_file() else []
    text = "\n".join([
        "## SURf on the small world: POPE and knowledge-VQA with retrieval", "",
        "Made by `python scripts/run_surf.py` (resumable; every command below, in order) on a 2-core CPU "
        "shared with other jobs (the seconds below are upper bounds), no GPU. Tiny random-initialised models (vision tower 64 px / width 64, "
        "LLM width 128, 2 layers, the 32k LLaMA tokenizer) -- the numbers show the pipeline works end to "
        "end, not what SURf does at 7B.", "",
        "### POPE (accuracy / F1 / yes-ratio, %; yes = positive class, official scoring)", "",
        *pope_table(root), "",
        f"Questions per split: {args.get('pope_max') or 'all (1,938)'}; prompt `<image>\\n{{question}} Answer yes or no.`; "
        "RAG puts the 2 nearest database images (tiny CLIP image->image, query excluded) and their captions first, "
        "the query image last, with the `vicuna_v1_retrieval` system prompt. "
        "Reference (SURf paper, LLaVA-1.5-7B, accuracy random/popular/adversarial): zero-shot 87.3/86.1/84.2, "
        "vanilla RAG 87.9/86.3/83.3, SURf 89.8/87.9/83.6.", "",
        "### Knowledge-VQA (the world's test `_vqa` items, single turns, short-answer exact match, %)", "",
        *vqa_table(root), "",
        "### Reading the numbers (computed)", "",
        *reading_lines(root, facts),
        "- SURf keeps only questions whose labels differ between retrieved items; the tiny base model's answers "
        "rarely depend on the retrieved image, so few samples survive (see the construction counts below).", "",
        "### Inputs of the tables", "",
        f"- Base model (`train_configs/llava_tiny_world.yaml`: the world's conversations and the yes/no "
        f"questions, sample ratio {mixture_ratios(root)} per step), its own evaluation on 200 test conversations "
        f"(multi-turn context, last answer generated): {base_summary(base_eval)}",
        f"- Database: the world's {clip.get('train_pairs', 0) + clip.get('held_out', 0)} training images with "
        f"their captions (no test image); tiny CLIP trained {clip.get('steps', '?')} steps of 64 pairs "
        f"({clip.get('train_seconds', '?')} s) on {clip.get('train_pairs', '?')} of them; recall on the "
        f"{clip.get('held_out', '?')} held out, before -> after: {recall_summary(clip)}",
        f"- SURf data construction ({args.get('surf_samples')} training conversations, k={args.get('surf_k')} re-answers "
        f"per question, base model as answerer): `{json.dumps(stats)}`",
        f"- SURf training: {len(surf_log)} steps from the base checkpoint, loss {surf_log[0]['loss']:.3f} -> "
        f"{surf_log[-1]['loss']:.3f}" if surf_log else "- SURf training: not run yet", "",
        "### Commands and wall-clock seconds", "", *command_lines(root, all_steps, timings), "",
    ])
    target = root / "docs" / "RESULTS_SURF.md"
    text = "\n".join([text, *kept_notes(target), ""])
    print(text)
    target.write_text(text)
    return target


def main(argv: Sequence[str] = ()) -> None:
    args = parse_args(argv)
    timings = load_json(REPO / OUT / "timings.json", {})
    all_steps = steps(args)
    for step in all_steps:
        if args.only is None or step.name in args.only:
            run_step(step, args, timings)
    if args.only is None or "report" in args.only:
        write_report(REPO, OUT, all_steps, timings, vars(args))


if __name__ == "__main__":
    main(sys.argv[1:])
