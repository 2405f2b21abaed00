"""LRV robust instruction tuning on the world: data, base vs LRV-tuned training, hallucination both ways.

Stages (resumable: a stage whose outputs exist is skipped; `--force` reruns):

    data                    <world>/lrv/ by mmrag.datasets.world.lrv_instructions (oracle generator, or
                            an LLM through a chat backend for the train split)
    train_base              train_configs/lrv_small_base.yaml   positives only, from `init`
    train_tuned             train_configs/lrv_small_tuned.yaml  positives + negatives, from `init`
    lrv_<model>_<control>   held-out LRV instructions (eval_configs/lrv_small_instructions.yaml)
    mme_<model>             the world's paired yes/no set in MME's layout (eval_configs/lrv_small_mme.yaml)
    pope_<model>_<control>  POPE random / popular / adversarial (eval_configs/lrv_small_pope.yaml)

then `report`: per model and image control the false-premise rejection, over-rejection, positive
accuracy and robust score; MME scores; POPE accuracy / yes-ratio; and tuned minus base with 95% paired
bootstrap intervals over the same questions (rejection on the negatives, accuracy and over-rejection
on the positives, POPE accuracy). Written to <out>/report.md and <out>/report.json.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from mmrag.common.errors import ConfigError
from mmrag.common.jsonl import read_jsonl
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.pipelines.seeing import _in_process, eval_stage, train_stage
from mmrag.pipelines.stages import Stage, run_pipeline_stages, stage_report

MODELS = ("base", "tuned")
TRAIN_CONFIGS = {"base": "train_configs/lrv_small_base.yaml", "tuned": "train_configs/lrv_small_tuned.yaml"}
EVAL_CONFIGS = {"lrv": "eval_configs/lrv_small_instructions.yaml", "mme": "eval_configs/lrv_small_mme.yaml",
                "pope": "eval_configs/lrv_small_pope.yaml"}
POPE_SPLITS = ("random", "popular", "adversarial")
CONTROLS = ("none", "blank", "shuffled", "text_only")


@dataclass
class LrvOptions:
    out: str = "output/lrv_small"               # relative to the repository root
    world: str = "dataset/world_small"          # the world whose lrv/ the data stage writes
    seed: int = 0                               # of the instruction writer
    init: Optional[str] = "output/seeing_small/stage2_instruct/final"  # both models start here (None: the config's)
    overrides: Sequence[str] = field(default_factory=list)   # key=value for every train/eval stage
    stage_overrides: Dict[str, List[str]] = field(default_factory=dict)
    lrv_max: int = 1200                         # first held-out LRV items (0: all); ~20 per image
    pope_max: int = 300                         # first questions per POPE split (0: all)
    mme_max: int = 0                            # first MME questions (0: all; keep even: pairs are adjacent)
    lrv_controls: Sequence[str] = ("none", "text_only")
    pope_controls: Sequence[str] = CONTROLS
    generator: Mapping[str, object] = field(default_factory=lambda: {"type": "oracle"})
    in_process: bool = False


def write_data(root: Path, opt: LrvOptions) -> Dict[str, int]:
    """The data stage: the world's LRV files with the configured generator."""
    from mmrag.datasets.world.lrv_instructions import load_scene_graphs, write_lrv_instructions

    world = root / opt.world
    kind = opt.generator.get("type", "oracle")
    if kind == "oracle":
        return write_lrv_instructions(world, opt.seed)
    if kind != "llm":
        raise ConfigError(f"generator.type: expected oracle or llm, got {kind!r}")
    from mmrag.datasets.world.lrv_llm import LlmGenerator
    from mmrag.models.text_generator import build_chat_backend

    settings = {k: v for k, v in opt.generator.items() if k not in ("type", "backend")}
    backend = build_chat_backend(dict(opt.generator.get("backend") or {}), where="generator.backend")
    _, entities = load_scene_graphs(world, opt.seed)
    return write_lrv_instructions(world, opt.seed, LlmGenerator(backend, world, entities, **settings))


def _stage(opt: LrvOptions, root: Path, name: str, cfg: str, output: str, folder: str, extra: Sequence[str],
           train: bool) -> Stage:
    py = sys.executable
    argv = [py, "train.py" if train else "eval.py", "--cfg-path", cfg, f"run.output_dir={folder}", *extra,
            *opt.overrides, *opt.stage_overrides.get(name, [])]
    runner = train_stage if train else eval_stage
    return Stage(name, [output], argv, stale=[folder], run=_in_process(runner, root, argv) if opt.in_process else None,
                 log_file=None if opt.in_process else f"{opt.out}/logs/{name}.log")


def build_stages(opt: LrvOptions, root: Path = Path(".")) -> List[Stage]:
    out = opt.out
    stages = [Stage("data", [f"{opt.world}/lrv/counts.json"],
                    [f"mmrag.pipelines.lrv.write_data world={opt.world} seed={opt.seed} generator={dict(opt.generator)}"],
                    run=lambda: write_data(root, opt))]
    init = [f"model.checkpoint={opt.init}" if opt.init else "model.checkpoint=null"]
    for model in MODELS:
        stages.append(_stage(opt, root, f"train_{model}", TRAIN_CONFIGS[model],
                             f"{out}/{model}/final/trainable.safetensors", f"{out}/{model}", ["run.progress=false", *init],
                             train=True))
    for model in MODELS:
        weights = [f"model.checkpoint={out}/{model}/final"]
        for control in opt.lrv_controls:
            limit = [f"evaluation.max_samples={opt.lrv_max}"] if opt.lrv_max else []
            folder = f"{out}/lrv_{model}_{control}"
            stages.append(_stage(opt, root, f"lrv_{model}_{control}", EVAL_CONFIGS["lrv"], f"{folder}/results.json",
                                 folder, [*weights, f"evaluation.image_control={control}", *limit], train=False))
        limit = [f"evaluation.max_samples={opt.mme_max}"] if opt.mme_max else []
        stages.append(_stage(opt, root, f"mme_{model}", EVAL_CONFIGS["mme"], f"{out}/mme_{model}/results.json",
                             f"{out}/mme_{model}", [*weights, *limit], train=False))
        for control in opt.pope_controls:
            limit = [f"evaluation.max_samples={opt.pope_max}"] if opt.pope_max else []
            folder = f"{out}/pope_{model}_{control}"
            stages.append(_stage(opt, root, f"pope_{model}_{control}", EVAL_CONFIGS["pope"], f"{folder}/results.json",
                                 folder, [*weights, f"evaluation.image_control={control}", *limit], train=False))
    return stages


# ----------------------------------------------------------------------------- report
def _correct(folder: Path, split: str) -> Dict[str, float]:
    return {str(r["question_id"]): float(r["correct"]) for r in read_jsonl(folder / f"answers_{split}.jsonl")}


def _paired(base: Path, tuned: Path, split: str, ids: Optional[set] = None, flip: bool = False) -> Dict[str, float]:
    """tuned minus base over the questions both answered (restricted to `ids`); `flip`: on 1 - correct."""
    a, b = _correct(tuned, split), _correct(base, split)
    keys = sorted(k for k in a if k in b and (ids is None or k in ids))
    value = (lambda x: 1.0 - x) if flip else (lambda x: x)
    return paired_bootstrap([value(a[k]) for k in keys], [value(b[k]) for k in keys])


def _polarity_ids(root: Path, opt: LrvOptions) -> Dict[str, set]:
    items = read_jsonl(root / opt.world / "lrv" / "items_test.jsonl")
    return {p: {str(i["question_id"]) for i in items if i["polarity"] == p} for p in ("positive", "negative")}


def lrv_table(results: Mapping[str, Mapping], opt: LrvOptions) -> List[str]:
    lines = ["| model | image | false-premise rejection | over-rejection | positive accuracy | corrected | robust | n neg / pos |",
             "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for control in opt.lrv_controls:
            m = results[f"lrv_{model}_{control}"]["test"]
            lines.append(f"| {model} | {control} | {100 * m['false_premise_rejection']:.1f} | {100 * m['over_rejection']:.1f} "
                         f"| {100 * m['positive_accuracy']:.1f} | {100 * m['negative_corrected']:.1f} "
                         f"| {100 * m['robust_score']:.1f} | {m['num_negative']} / {m['num_positive']} |")
    return lines


def other_tables(results: Mapping[str, Mapping], opt: LrvOptions) -> List[str]:
    subtasks = sorted(results["mme_base"]["test"]["subtasks"])
    lines = ["", "MME-style paired yes/no (score = 100 x (acc + acc+) per subtask; total of the subtasks):", "",
             "| model | " + " | ".join(subtasks) + " | total | yes-ratio |", "|---|" + "---|" * (len(subtasks) + 2)]
    for model in MODELS:
        m = results[f"mme_{model}"]["test"]
        lines.append(f"| {model} | " + " | ".join(f"{m['subtasks'][s]['score']:.1f}" for s in subtasks)
                     + f" | {m['total']:.1f} | {100 * m['yes_ratio']:.1f} |")
    lines += ["", "POPE accuracy / F1 / yes-ratio (%):", "", "| model | image | " + " | ".join(POPE_SPLITS) + " |",
              "|---|---|" + "---|" * len(POPE_SPLITS)]
    for model in MODELS:
        for control in opt.pope_controls:
            m = results[f"pope_{model}_{control}"]
            lines.append(f"| {model} | {control} | " + " | ".join(
                f"{100 * m[s]['accuracy']:.1f} / {100 * m[s]['f1']:.1f} / {100 * m[s]['yes_ratio']:.1f}" for s in POPE_SPLITS)
                + " |")
    return lines


def differences(root: Path, opt: LrvOptions) -> Dict[str, Dict[str, float]]:
    """tuned minus base, paired over the same questions (control none)."""
    out, ids = root / opt.out, _polarity_ids(root, opt)
    diffs = {}
    if "none" in opt.lrv_controls:
        base, tuned = out / "lrv_base_none", out / "lrv_tuned_none"
        diffs["false-premise rejection (negatives)"] = _paired(base, tuned, "test", ids["negative"])
        diffs["positive accuracy (positives)"] = _paired(base, tuned, "test", ids["positive"])
    diffs["MME question accuracy"] = _paired(out / "mme_base", out / "mme_tuned", "test")
    if "none" in opt.pope_controls:
        for split in POPE_SPLITS:
            diffs[f"POPE {split} accuracy"] = _paired(out / "pope_base_none", out / "pope_tuned_none", split)
    return diffs


def report(root: Path, opt: LrvOptions, stages: Sequence[Stage]) -> Dict[str, object]:
    out = root / opt.out
    names = [s.name for s in stages if s.name.startswith(("lrv_", "mme_", "pope_"))]
    missing = [n for n in names if not (out / n / "results.json").is_file()]
    if missing:
        raise ConfigError(f"{out}: no results of stage(s) {missing}; run them first (mmrag-run-lrv --only {' '.join(missing)})")
    results = {n: json.loads((out / n / "results.json").read_text()) for n in names}
    diffs = differences(root, opt)
    lines = ["Held-out LRV instructions (test images, %):", "", *lrv_table(results, opt), *other_tables(results, opt),
             "", "LRV-tuned minus base (points, 95% paired bootstrap over the same questions):", "",
             "| measure | tuned - base |", "|---|---|"]
    lines += [f"| {name} | {format_difference(d)} |" for name, d in diffs.items()]
    lines += ["", *stage_report(stages, out)]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps({"results": results, "differences": diffs}, indent=2))
    return {"results": results, "differences": diffs, "table": text}


def run_lrv(opt: LrvOptions, root: Path = Path("."), force: Sequence[str] = (),
            only: Optional[Sequence[str]] = None) -> Dict[str, object]:
    stages = build_stages(opt, root)
    run_pipeline_stages(stages, root, root / opt.out, force=force, only=only, stage_overrides=list(opt.stage_overrides))
    if only and all(n in ("data", "train_base", "train_tuned") for n in only):
        return {}  # nothing evaluated was asked for: no report
    result = report(root, opt, stages)
    print(result["table"])
    return result
