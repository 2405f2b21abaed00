"""The model that sees: staged training, then POPE with every image control.

Settings (`SeeingOptions.setting`; each stage a config, stage N initialises from stage N-1's `final/`
through `model.checkpoint`):

  small (2 CPU cores, a tiny from-scratch LLaMA):
    stage0_text      train_configs/seeing_small_stage0_text.yaml      language-model pre-training
    stage1_align     train_configs/seeing_small_stage1_align.yaml     captions + region descriptions
    stage2_instruct  train_configs/seeing_small_stage2_instruct.yaml  conversations + balanced yes/no
    pope_<control>   eval_configs/seeing_small_pope.yaml              none | blank | shuffled | text_only
  large (one GPU, SmolLM2-135M-Instruct + LoRA):
    smollm2          train_configs/seeing_large_smollm2.yaml          naming, presence, conversations
    pope_<control>   eval_configs/seeing_large_pope.yaml
  small_grounded (2 CPU cores; one stage from a random 128 x 2 LLaMA, the recipe chosen on val in
  docs/measurements/seeing_small_grounded_2026-11-30/match_bias/README.md):
    stage2_grounded  train_configs/seeing_small_grounded.yaml         naming mix + grounding loss + name-match bias
    pope_<control>   eval_configs/seeing_small_grounded_pope.yaml
  large_grounded (one GPU; the large recipe at 224 px with small_grounded's answer path, chosen on val in
  docs/measurements/h200x2_lease_2026-11-30e/, the rule in gpu/seeing_final.sh):
    smollm2          train_configs/seeing_large_grounded.yaml         naming mix + grounding loss + name-match bias
    pope_<control>   eval_configs/seeing_large_grounded_pope.yaml

`questions`: `test` (the world's POPE splits random / popular / adversarial) or `val` (the val
presence questions of held-out training images as POPE lines, `pope_val/`: all / random / popular /
adversarial), so settings are chosen without touching the test questions.

then `report`: one table of accuracy / F1 / yes-ratio per split and control, and the multimodal
gain (accuracy with the image minus accuracy under each control) with its 95% paired bootstrap
interval over the same questions (`mmrag.metrics.bootstrap.paired_bootstrap`), written to
`<out>/report.md` and `<out>/report.json`. The stage runner skips a stage whose outputs exist, so an
interrupted run continues; `--force` reruns stages. Every stage's seconds are in `<out>/stages.jsonl`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mmrag.common.jsonl import read_jsonl
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.pipelines.analysis import correct_by_question, false_yes_by_frequency, training_image_counts
from mmrag.pipelines.shuffled_oracle import shuffled_oracle_by_split, shuffled_oracle_table, world_objects
from mmrag.pipelines.stages import Stage, run_pipeline_stages, stage_report

SPLITS = ("random", "popular", "adversarial")
CONTROLS = ("none", "blank", "shuffled", "text_only")
TRAIN_STAGES = (("stage0_text", "seeing_small_stage0_text"), ("stage1_align", "seeing_small_stage1_align"),
                ("stage2_instruct", "seeing_small_stage2_instruct"))
EVAL_CONFIG = "eval_configs/seeing_small_pope.yaml"
SETTINGS = {"small": (TRAIN_STAGES, EVAL_CONFIG),
            "large": ((("smollm2", "seeing_large_smollm2"),), "eval_configs/seeing_large_pope.yaml"),
            "small_grounded": ((("stage2_grounded", "seeing_small_grounded"),),
                               "eval_configs/seeing_small_grounded_pope.yaml"),
            "large_grounded": ((("smollm2", "seeing_large_grounded"),), "eval_configs/seeing_large_grounded_pope.yaml")}
QUESTION_SPLITS = {"test": SPLITS, "val": ("all", *SPLITS)}


@dataclass
class SeeingOptions:
    out: str = "output/seeing_small"            # relative to the repository root
    overrides: Sequence[str] = field(default_factory=list)   # key=value for every stage (e.g. a smaller world)
    stage_overrides: Dict[str, List[str]] = field(default_factory=dict)  # stage name -> extra key=value
    pope_max: int = 0                           # first questions per split (0: all)
    controls: Sequence[str] = CONTROLS
    image_dir: str = "dataset/world_small/images"   # every image the tower's feature cache is filled with
    in_process: bool = False   # run train/eval in this process (tests: no interpreter start-up per stage)
    setting: str = "small"     # small | large | small_grounded | large_grounded (SETTINGS)
    questions: str = "test"    # test | val (QUESTION_SPLITS)
    world: str = "dataset/world_small"   # its pope_val/ holds the val questions

    @property
    def splits(self) -> Sequence[str]:
        return QUESTION_SPLITS[self.questions]

    def question_options(self) -> List[str]:
        """Evaluation keys for `questions` (test: the eval config's own)."""
        if self.questions == "test":
            return []
        return [f"evaluation.question_file={self.world}/pope_val/{{split}}.jsonl",
                f"evaluation.splits=[{','.join(self.splits)}]"]


def cache_features(root: Path, cfg_path: str, overrides: Sequence[str], image_dir: str, done_file: Path,
                   batch_size: int = 64) -> None:
    """Run the frozen tower of `cfg_path`'s model once over every image of `image_dir`, filling its
    on-disk feature cache (`model.vision_tower.feature_cache`), so the training stages and the
    evaluations only read features. Writes `done_file` with the count and the cache's hit rate."""
    import torch
    from omegaconf import OmegaConf
    from tqdm import tqdm

    from mmrag.common.config import build_config
    from mmrag.models.vision_tower import build_vision_tower
    from mmrag.processors.image_processing import ImageProcessor

    cfg = build_config(str(root / cfg_path), list(overrides)).model
    tower_cfg = OmegaConf.to_container(cfg.vision_tower, resolve=True)
    if not tower_cfg.get("feature_cache"):
        return
    tower_cfg["feature_cache"] = str(root / tower_cfg["feature_cache"])
    tower = build_vision_tower(tower_cfg)
    images = ImageProcessor(tower.image_size, tower.image_mean, tower.image_std, cfg.pad_to_square)
    files = sorted((root / image_dir).glob("*.jpg"))
    if not files:  # else an empty cache would be marked done and every later stage would fail far from here
        from mmrag.common.errors import UserError
        raise UserError(f"seeing: no .jpg image in {root / image_dir}; generate the world first "
                        f"(python data_process/make_world.py --preset small --out dataset/world_small)")
    for start in tqdm(range(0, len(files), batch_size), desc="tower features", mininterval=10):
        with torch.no_grad():
            tower(torch.stack([images(str(f)) for f in files[start:start + batch_size]]))
    done_file.parent.mkdir(parents=True, exist_ok=True)
    done_file.write_text(json.dumps({"images": len(files), "computed": tower.cache.misses, "read": tower.cache.hits}))


def train_stage(root: Path, cfg_path: str, options: Sequence[str]) -> None:
    """`python train.py --cfg-path <cfg_path> <options>`, in this process (no interpreter start-up per stage)."""
    from mmrag.common.config import build_config
    from mmrag.common.registry import RUNNERS, TASKS

    cfg = build_config(str(root / cfg_path), list(options))
    RUNNERS.get(cfg.run.runner)(cfg, TASKS.get(cfg.run.task)(cfg)).train()


def eval_stage(root: Path, cfg_path: str, options: Sequence[str]) -> None:
    """`python eval.py --cfg-path <cfg_path> <options>`, in this process."""
    import torch

    from mmrag.common.config import build_config, save_config
    from mmrag.common.registry import TASKS

    cfg = build_config(str(root / cfg_path), list(options))
    torch.manual_seed(cfg.run.seed)
    task = TASKS.get(cfg.run.task)(cfg)
    model = task.build_model(cfg)
    if torch.cuda.is_available() and cfg.run.device != "cpu":
        model = model.cuda()
    save_config(cfg, Path(cfg.run.output_dir))
    task.evaluate(model, cfg, Path(cfg.run.output_dir))


def _in_process(runner, root: Path, argv: Sequence[str]):
    """A stage callable running `argv` (python train.py/eval.py --cfg-path X opts) by `runner`."""
    return lambda: runner(root, argv[3], argv[4:])


def world_stages(opt: SeeingOptions, root: Path) -> List[Stage]:
    """The world's generation when `opt.world` is a preset's default folder (dataset/world_<preset>), so a
    fresh clone runs the pipeline alone; another folder is the user's own world and is only read."""
    from mmrag.datasets.world.presets import preset_names
    from mmrag.pipelines.prepare import world_stage

    preset = Path(opt.world).name.removeprefix("world_")
    if Path(opt.world) != Path("dataset") / f"world_{preset}" or preset not in preset_names():
        return []
    return [world_stage(root, opt.world, preset)]


def build_stages(opt: SeeingOptions, root: Path = Path(".")) -> List[Stage]:
    from mmrag.common.errors import ConfigError

    if opt.setting not in SETTINGS or opt.questions not in QUESTION_SPLITS:
        raise ConfigError(f"seeing: setting must be one of {', '.join(SETTINGS)} (got {opt.setting!r}) and questions "
                          f"one of {', '.join(QUESTION_SPLITS)} (got {opt.questions!r})")
    train_stages, eval_config = SETTINGS[opt.setting]
    py, out = sys.executable, opt.out
    first = f"train_configs/{train_stages[0][1]}.yaml"
    stages: List[Stage] = world_stages(opt, root)
    stages += [Stage(
        "features", [f"{out}/features_done.json"], [f"mmrag.pipelines.seeing.cache_features {first} {opt.image_dir}"],
        run=lambda: cache_features(root, first, opt.overrides, opt.image_dir, root / out / "features_done.json"))]
    previous: Optional[str] = None
    for name, cfg in train_stages:
        init = [f"model.checkpoint={out}/{previous}/final"] if previous else ["model.checkpoint=null"]
        argv = [py, "train.py", "--cfg-path", f"train_configs/{cfg}.yaml", f"run.output_dir={out}/{name}",
                "run.progress=false", *init, *opt.overrides, *opt.stage_overrides.get(name, [])]
        stages.append(Stage(name, [f"{out}/{name}/final/trainable.safetensors"], argv, stale=[f"{out}/{name}"],
                            run=_in_process(train_stage, root, argv) if opt.in_process else None,
                            log_file=None if opt.in_process else f"{out}/logs/{name}.log"))
        previous = name
    limit = [f"evaluation.max_samples={opt.pope_max}"] if opt.pope_max else []
    for control in opt.controls:
        folder = f"{out}/pope_{control}"
        argv = [py, "eval.py", "--cfg-path", eval_config, f"run.output_dir={folder}",
                f"model.checkpoint={out}/{previous}/final", f"evaluation.image_control={control}",
                *opt.question_options(), *limit, *opt.overrides, *opt.stage_overrides.get(f"pope_{control}", [])]
        stages.append(Stage(f"pope_{control}", [f"{folder}/results.json"], argv, stale=[folder],
                            run=_in_process(eval_stage, root, argv) if opt.in_process else None,
                            log_file=None if opt.in_process else f"{out}/logs/pope_{control}.log"))
    return stages


# ----------------------------------------------------------------------------- report
def report(root: Path, opt: SeeingOptions, stages: Sequence[Stage]) -> Dict[str, object]:
    """The table of every control and split, and the gains with their intervals (see the module doc)."""
    out = root / opt.out
    results = {c: json.loads((out / f"pope_{c}" / "results.json").read_text()) for c in opt.controls}
    splits = opt.splits
    lines = [f"POPE ({opt.questions} questions), accuracy / F1 / yes-ratio (%):", "",
             "| image | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for control in opt.controls:
        cells = [f"{100 * results[control][s]['accuracy']:.1f} / {100 * results[control][s]['f1']:.1f} / "
                 f"{100 * results[control][s]['yes_ratio']:.1f}" for s in splits]
        lines.append(f"| {control} | " + " | ".join(cells) + " |")
    gains: Dict[str, Dict[str, Dict[str, float]]] = {}
    if "none" in opt.controls:
        lines += ["", "Multimodal gain (accuracy with the image minus under the control, points, 95% paired bootstrap):",
                  "", "| control | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        for control in [c for c in opt.controls if c != "none"]:
            gains[control] = {}
            for split in splits:
                seen = correct_by_question(out / "pope_none" / f"answers_{split}.jsonl")
                blind = correct_by_question(out / f"pope_{control}" / f"answers_{split}.jsonl")
                ids = sorted(seen)
                gains[control][split] = paired_bootstrap([seen[i] for i in ids], [blind[i] for i in ids])
            lines.append(f"| {control} | " + " | ".join(format_difference(gains[control][s]) for s in splits) + " |")
    by_frequency = false_yes_table(root / opt.world, out / "pope_none", splits) if "none" in opt.controls else {}
    if by_frequency:
        bins = list(next(iter(by_frequency.values())))
        lines += ["", "False \"yes\" on the \"no\" questions (the image shown), by how many training images hold the "
                  "asked object:", "", "| split | " + " | ".join(f"{b} images" for b in bins) + " |",
                  "|---|" + "---|" * len(bins)]
        for split, table in by_frequency.items():
            lines.append(f"| {split} | " + " | ".join(
                f"{c['false_yes']}/{c['questions']} ({100 * c['rate']:.0f}%)" if c["questions"] else "-"
                for c in table.values()) + " |")
    oracle = shuffled_oracle_splits(root, root / opt.world, out, splits) if "shuffled" in opt.controls else {}
    if oracle:
        lines += ["", "The shuffled control against a perfect seer given the same images (it answers whether the "
                  "SHOWN image holds the asked object; scored against the question's own label), %:", "",
                  *shuffled_oracle_table(oracle)]
    lines += ["", *stage_report(stages, out)]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    (out / "report.json").write_text(json.dumps({"results": results, "gains": gains,
                                                 "false_yes_by_frequency": by_frequency,
                                                 "shuffled_oracle": oracle}, indent=2))
    return {"results": results, "gains": gains, "table": text}


def false_yes_table(world: Path, folder: Path, splits: Sequence[str]) -> Dict[str, Dict]:
    """analysis.false_yes_by_frequency per split of `folder`'s answers; {} without the world's training boxes."""
    instances = world / "annotations" / "instances_train.json"
    if not instances.is_file():
        return {}
    counts = training_image_counts(json.loads(instances.read_text()))
    return {s: false_yes_by_frequency(read_jsonl(folder / f"answers_{s}.jsonl"), counts) for s in splits
            if (folder / f"answers_{s}.jsonl").is_file()}


def shuffled_oracle_splits(root: Path, world: Path, out: Path, splits: Sequence[str]) -> Dict[str, Dict]:
    """shuffled_oracle per split of `out`/pope_shuffled's answers (with pope_none's for reference), the
    questions, image root and seed read from the config that evaluation saved (the last one: a rerun
    saves config.<n>.yaml beside the first); {} without that config or the world's boxes."""
    from omegaconf import OmegaConf

    from mmrag.common.config import last_saved_config

    folder = out / "pope_shuffled"
    config, objects = last_saved_config(folder), world_objects(world)
    if config is None or not objects:
        return {}
    ev = OmegaConf.load(config).evaluation
    return shuffled_oracle_by_split(root, objects, str(ev.question_file), str(ev.image_root), int(ev.seed), folder,
                                    out / "pope_none", splits)


def run_seeing(opt: SeeingOptions, root: Path = Path("."), force: Sequence[str] = (),
               only: Optional[Sequence[str]] = None) -> Dict[str, object]:
    stages = build_stages(opt, root)
    run_pipeline_stages(stages, root, root / opt.out, force=force, only=only, stage_overrides=list(opt.stage_overrides))
    result = report(root, opt, stages)
    print(result["table"])
    return result
