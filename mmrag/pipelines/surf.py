"""SURf on the small synthetic world, end to end, as resumable stages (mmrag.pipelines.stages):

  yesno_data      balanced POPE-style yes/no questions on the world's TRAIN images (and a held-out test
                  file) -> dataset/world_small/llava/yesno_{train,test}.json
  base_train      instruction-tune the tiny model on the world's LLaVA data mixed with the yes/no
                  questions (output/llava_tiny_world)
  db_captions     the leakage guard: the image-caption pairs of the TRAINING conversations' images only;
                  fails if any test image (test conversations, POPE questions) would enter the database
  db              image-caption database of those pairs (tiny CLIP trained first)
  pope_base_none  POPE zero-shot                  pope_base_rag   POPE with vanilla RAG
  surf_subset     a seeded subset of the training conversations for SURf data construction
  surf_data       SURf data construction with the base model as answerer
  surf_train      SURf training from the base checkpoint
  pope_surf_rag   POPE of the SURf model with RAG  pope_surf_none  ... and without retrieval
  vqa_*           the world's test VQA items (short answers), with and without retrieval

Evaluations run `eval.py` on eval_configs/pope_*.yaml and world_vqa_*.yaml (task vqa_eval: each
writes results.json and answers_<split>.jsonl); the report (mmrag.pipelines.surf_report) is
computed from those outputs. Every stage's command, seconds and output hashes go to
output/surf_world_small/stages.jsonl.

The base model (`SurfOptions.base`, BASES):

  tiny          the tiny LLaVA the pipeline trains itself (train_configs/llava_tiny_world.yaml);
                report: docs/RESULTS_SURF.md
  seeing_large  the large-setting model that sees (train_configs/seeing_large_smollm2.yaml:
                SmolLM2-135M-Instruct + LoRA, EfficientNet-Lite0, chatml); `base_checkpoint` names
                its trained `final/` folder and base_train is then left out (without one, base_train
                trains it into <out>/base). SURf training continues from that checkpoint with the
                same LoRA (train_configs/surf_seeing_large.yaml, `surf_steps` steps); POPE through
                eval_configs/surf_seeing_pope.yaml (the SURf model:
                surf_seeing_pope_surf.yaml), RAG prompts with the chatml_retrieval system
                prompt, exact torch search (no faiss); image controls of the zero-shot base
                (pope_base_<control>); no knowledge-VQA rows. Report: <out>/report.md and
                report.json with 95% paired bootstrap intervals of SURf+RAG minus vanilla RAG and
                vanilla RAG minus zero-shot (mmrag.pipelines.surf_report.paired_section).
  seeing_small  the small-setting model that sees, on the CPU (train_configs/seeing_small_grounded.yaml: a
                random-init 128 x 2 LLaMA, EfficientNet-Lite0, grounding loss, match_answer_bias, vicuna_v1);
                as seeing_large, with full fine-tuning (train_configs/surf_seeing_small.yaml), POPE through
                eval_configs/surf_seeing_small_pope.yaml (SURf model: surf_seeing_small_pope_surf.yaml),
                RAG prompts with the vicuna_v1_retrieval system prompt and faiss exact search.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set

from mmrag.common.errors import UserError
from mmrag.pipelines.stages import Stage, run_stages
from mmrag.pipelines.surf_layout import BASE_CKPT, BASE_OUT, OUT, POPE_SPLITS, RAG_K, SURF_CKPT, WORLD, YESNO

REPO_ROOT = Path(__file__).resolve().parents[2]
# the construction stages that hold the answering model's output (split / retrieve do not)
SURF_MODEL_STAGES = ("initial.*", "reanswer.*", "evaluated.*", "grouped.jsonl", "surf_train.json")
# (stage, eval config, extra overrides): the knowledge-VQA rows (POPE rows: pope_eval_stages)
VQA_EVALS = [("vqa_base_none", "world_vqa_zeroshot", []), ("vqa_base_rag", "world_vqa_rag", []),
             ("vqa_surf_rag", "world_vqa_surf_rag", []), ("vqa_surf_none", "world_vqa_surf_rag", ["evaluation.retrieval.mode=none"])]


class LeakageError(UserError, RuntimeError):
    """A test image would enter the retrieval database: names the image."""


@dataclass(frozen=True)
class BaseSetting:
    """One base model of the pipeline: its configs and how RAG prompts and the database are made."""
    train_cfg: str           # the base model's training config (base_train; the SURf answerer builds from it)
    pope_cfg: str            # zero-shot POPE of the base (RAG and controls by overrides)
    surf_train_cfg: str      # SURf training from the base checkpoint
    surf_pope_cfg: str       # POPE of the SURf-trained model
    rag_template: str        # whose system prompt RAG requests use
    index_backend: str       # the database's search backend (create_index index.backend)
    answer_batch: int        # requests per answerer call in SURf data construction
    vqa: bool                # knowledge-VQA rows (their eval configs are the tiny model's)
    default_controls: Sequence[str] = ()


BASES: Dict[str, BaseSetting] = {
    "tiny": BaseSetting("train_configs/llava_tiny_world.yaml", "eval_configs/pope_zeroshot.yaml",
                        "train_configs/surf_tiny_world.yaml", "eval_configs/pope_surf_rag.yaml",
                        "vicuna_v1_retrieval", "faiss", 32, True),
    "seeing_large": BaseSetting("train_configs/seeing_large_smollm2.yaml", "eval_configs/surf_seeing_pope.yaml",
                                "train_configs/surf_seeing_large.yaml", "eval_configs/surf_seeing_pope_surf.yaml",
                                "chatml_retrieval", "torch", 128, False, ("shuffled", "blank")),
    "seeing_small": BaseSetting("train_configs/seeing_small_grounded.yaml", "eval_configs/surf_seeing_small_pope.yaml",
                                "train_configs/surf_seeing_small.yaml", "eval_configs/surf_seeing_small_pope_surf.yaml",
                                "vicuna_v1_retrieval", "faiss", 64, False, ("shuffled", "blank")),
}
QUESTION_FOLDERS = {"test": "pope", "val": "pope_val"}   # POPE lines of the world's test / val images


@dataclass
class SurfOptions:
    clip_steps: int = 200        # tiny CLIP training steps (batch 64)
    surf_samples: int = 200      # training conversations for SURf construction
    surf_k: int = 4              # retrieved items re-answered per question
    pope_max: int = 600          # first questions of each POPE split (0: all)
    vqa_max: int = 600           # first knowledge-VQA questions (0: all)
    seed: int = 0
    base: str = "tiny"                     # BASES
    base_checkpoint: Optional[str] = None  # the base's trained final/ folder: base_train is left out
    out: str = OUT                         # the pipeline's output folder (relative to the root)
    surf_steps: int = 0                    # SURf training steps (0: the SURf config's own schedule)
    controls: Optional[Sequence[str]] = None   # image controls of the zero-shot base (None: the base's default)
    eval_batch: int = 0                    # POPE evaluation batch size (0: the eval config's)
    questions: str = "test"                # test | val (QUESTION_FOLDERS)
    overrides: Sequence[str] = field(default_factory=list)  # key=value for every model command (e.g. a smaller model)

    def __post_init__(self) -> None:
        from mmrag.common.errors import ConfigError

        if self.base not in BASES:
            raise ConfigError(f"--base {self.base!r}: expected one of {', '.join(BASES)}")
        if self.questions not in QUESTION_FOLDERS:
            raise ConfigError(f"--questions {self.questions!r}: expected one of {', '.join(QUESTION_FOLDERS)}")
        if self.base_checkpoint and not self.base_checkpoint.rstrip("/"):
            raise ConfigError("--base-checkpoint: expected a folder")

    @property
    def setting(self) -> BaseSetting:
        return BASES[self.base]

    @property
    def image_controls(self) -> Sequence[str]:
        return tuple(self.setting.default_controls if self.controls is None else self.controls)

    @property
    def base_ckpt(self) -> str:
        """The base model's weights: the given folder, else what base_train writes."""
        if self.base_checkpoint:
            return self.base_checkpoint.rstrip("/")
        return BASE_CKPT if self.base == "tiny" else f"{self.out}/base/final"

    @property
    def pope_folder(self) -> str:
        return f"{WORLD}/{QUESTION_FOLDERS[self.questions]}"

    def report_target(self, root: Path) -> Path:
        """docs/RESULTS_SURF.md for the default run, else <out>/report.md (report.json beside it)."""
        if self.base == "tiny" and self.out == OUT and self.questions == "test":
            return root / "docs" / "RESULTS_SURF.md"
        return root / self.out / "report.md"


# ----------------------------------------------------------------------------- the leakage guard
def _images(records: Iterable[dict]) -> Set[str]:
    return {r["image"] for r in records if r.get("image")}


def held_out_images(world: Path, pope_folders: Sequence[str] = ("pope",)) -> Set[str]:
    """Every image a test (or val) question is asked about, as world-relative paths ('images/<file>')."""
    test = _images(json.loads((world / "llava/instruct_test.json").read_text()))
    for folder in pope_folders:
        for pope in sorted((world / folder).glob("*.jsonl")):
            test |= {f"images/{json.loads(line)['image']}" for line in pope.read_text().splitlines() if line.strip()}
    return test


def training_captions(world: Path, pope_folders: Sequence[str] = ("pope",)) -> List[dict]:
    """The world's image-caption pairs of the training conversations' images; raises LeakageError if
    any of them is a test image."""
    train_images = _images(json.loads((world / "llava/instruct_train.json").read_text()))
    pairs = [p for p in json.loads((world / "image_captions.json").read_text()) if p["image"] in train_images]
    leaked = sorted({p["image"] for p in pairs} & held_out_images(world, pope_folders))
    if leaked:
        raise LeakageError(f"{world}: {len(leaked)} test images would enter the database, e.g. {leaked[0]}")
    return pairs


def write_db_captions(root: Path, out: str = OUT, pope_folders: Sequence[str] = ("pope",)) -> None:
    pairs = training_captions(root / WORLD, pope_folders)
    target = root / out / "db_captions.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(pairs, indent=1))
    print(f"db captions: {len(pairs)} training images -> {target}")


def write_surf_subset(root: Path, count: int, seed: int, out: str = OUT) -> None:
    """A seeded random subset of the training conversations (with an image) for SURf data construction."""
    samples = [s for s in json.loads((root / WORLD / "llava/instruct_train.json").read_text()) if s.get("image")]
    keep = sorted(random.Random(seed).sample(range(len(samples)), min(count, len(samples))))
    target = root / out / "surf_data" / "llava_subset.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps([samples[i] for i in keep], indent=1))
    print(f"surf subset: {len(keep)} of {len(samples)} training conversations -> {target}")


# ----------------------------------------------------------------------------- the stages
def _eval_stage(name: str, cfg: str, extra: Sequence[str], max_samples: int, out: str = OUT) -> Stage:
    limit = [f"evaluation.max_samples={max_samples}"] if max_samples else []
    folder = f"{out}/{name}"
    return Stage(name, [f"{folder}/results.json"], [sys.executable, "eval.py", "--cfg-path", cfg if cfg.endswith(".yaml")
                                                    else f"eval_configs/{cfg}.yaml", f"run.output_dir={folder}",
                                                    *extra, *limit])


def pope_eval_stages(opt: SurfOptions, rows_of: str) -> List[Stage]:
    """The POPE rows of the base model (rows_of="base": zero-shot, vanilla RAG), of the SURf-trained
    model ("surf": with and without RAG) or of the zero-shot base under each image control
    ("controls", run last: the headline rows come first when time runs out)."""
    s, out = opt.setting, opt.out
    rag = ["evaluation.retrieval.mode=rag", f"evaluation.retrieval.database={out}/db",
           f"evaluation.retrieval.k={RAG_K}",
           f"evaluation.retrieval.template={s.rag_template}"]
    common = list(opt.overrides)
    if opt.eval_batch:
        common.append(f"evaluation.batch_size={opt.eval_batch}")
    if opt.questions != "test":
        common.append(f"evaluation.question_file={opt.pope_folder}/{{split}}.jsonl")
    if rows_of == "surf":
        model = [f"model.checkpoint={out}/surf_model/final"]
        rows = [("pope_surf_rag", s.surf_pope_cfg, rag),
                ("pope_surf_none", s.surf_pope_cfg, ["evaluation.retrieval.mode=none"])]
    elif rows_of == "base":
        model = [f"model.checkpoint={opt.base_ckpt}"]
        rows = [("pope_base_none", s.pope_cfg, ["evaluation.retrieval.mode=none"]), ("pope_base_rag", s.pope_cfg, rag)]
    else:
        model = [f"model.checkpoint={opt.base_ckpt}"]
        rows = [(f"pope_base_{c}", s.pope_cfg, ["evaluation.retrieval.mode=none", f"evaluation.image_control={c}"])
                for c in opt.image_controls]
    return [_eval_stage(name, cfg, [*model, *extra, *common], opt.pope_max, out) for name, cfg, extra in rows]


def _surf_data_cfg(opt: SurfOptions) -> dict:
    out, s = opt.out, opt.setting
    kwargs = {"cfg_path": s.train_cfg, "checkpoint": opt.base_ckpt, "max_new_tokens": 24,
              "batch_size": s.answer_batch, "progress": False}
    if opt.overrides:
        kwargs["overrides"] = "[" + ",".join(json.dumps(o) for o in opt.overrides) + "]"  # YAML flow list of strings
    return {"llava": f"{out}/surf_data/llava_subset.json", "image_root": WORLD, "database": f"{out}/db",
            "work_dir": f"{out}/surf_data", "k": opt.surf_k, "batch_size": s.answer_batch,
            "answerer": {"target": "mmrag.pipelines.answerers:model_answerer", "kwargs": kwargs}}


def _dotlist(cfg: dict, prefix: str = "") -> List[str]:
    words = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            words += _dotlist(value, f"{prefix}{key}.")
        else:
            words.append(f"{prefix}{key}={str(value).lower() if isinstance(value, bool) else value}")
    return words


def _run_tool(root: Path, tool: str, cfg: dict) -> None:
    """Run a data tool in-process on `cfg` (paths relative to root), validated like its CLI."""
    import os

    from mmrag.common.tool_config import load_tool_config

    here = os.getcwd()
    os.chdir(root)  # the tool's relative paths are the pipeline's root-relative ones
    try:
        if tool == "create_index":
            from mmrag.retrieval.dense_database import create_database
            from mmrag.tasks.clip_pretrain import database_clip_trainer

            create_database(load_tool_config(tool, overrides=_dotlist(cfg)), progress=False,
                            train_clip=database_clip_trainer)
        elif tool == "surf_build_data":
            from mmrag.surf.build_data import run

            run("all", load_tool_config(tool, overrides=_dotlist(cfg)))
        else:
            from mmrag.datasets.pope_yesno import make_yes_no_files

            for report in make_yes_no_files(load_tool_config(tool, overrides=_dotlist(cfg))):
                print(report)
    finally:
        os.chdir(here)


def base_train_stage(opt: SurfOptions) -> Stage:
    py = sys.executable
    if opt.base == "tiny":
        return Stage("base_train", [f"{BASE_CKPT}/trainable.safetensors", f"{BASE_OUT}/metrics.json"],
                     [py, "train.py", "--cfg-path", opt.setting.train_cfg, "run.progress=false", *opt.overrides],
                     stale=[f"{BASE_OUT}/metrics.jsonl"])
    folder = f"{opt.out}/base"
    return Stage("base_train", [f"{folder}/final/trainable.safetensors"],
                 [py, "train.py", "--cfg-path", opt.setting.train_cfg, "run.progress=false", f"run.output_dir={folder}",
                  *opt.overrides], stale=[f"{folder}/metrics.jsonl"])


def surf_train_stage(opt: SurfOptions) -> Stage:
    """SURf training from the base checkpoint (its LoRA etc. from the SURf config) on the built samples."""
    out, py = opt.out, sys.executable
    extra = [] if opt.base == "tiny" and opt.out == OUT and not opt.base_checkpoint else \
        [f"model.checkpoint={opt.base_ckpt}", f"run.output_dir={out}/surf_model",
         f"datasets.llava_instruct.data_path={out}/surf_data/surf_train.json"]
    steps = [f"run.max_steps={opt.surf_steps}"] if opt.surf_steps else []
    return Stage("surf_train", [f"{out}/surf_model/final/trainable.safetensors"],
                 [py, "train.py", "--cfg-path", opt.setting.surf_train_cfg, "run.progress=false", *extra, *opt.overrides,
                  *steps], stale=[f"{out}/surf_model/metrics.jsonl"])


def surf_stages(opt: SurfOptions, root: Path = REPO_ROOT) -> List[Stage]:
    py, out = sys.executable, opt.out
    folders = ("pope",) if opt.questions == "test" else ("pope", QUESTION_FOLDERS[opt.questions])
    yesno = {"world": WORLD, "per_image": 2, "seed": opt.seed}
    db = {"captions": f"{out}/db_captions.json", "image_root": WORLD, "out_dir": f"{out}/db",
          "tiny_clip": {"steps": opt.clip_steps}}
    if opt.setting.index_backend != "faiss":
        db["index"] = {"backend": opt.setting.index_backend}
    surf_cfg = _surf_data_cfg(opt)
    vqa = [_eval_stage(n, c, e, opt.vqa_max, out) for n, c, e in VQA_EVALS] if opt.setting.vqa and out == OUT else []
    return [
        Stage("yesno_data", [YESNO.format(split="train"), YESNO.format(split="test")],
              [py, "data_process/make_pope_style_train.py", *_dotlist(yesno)],
              run=lambda: _run_tool(root, "make_pope_style_train", yesno)),
        *([] if opt.base_checkpoint else [base_train_stage(opt)]),
        Stage("db_captions", [f"{out}/db_captions.json"], ["(leakage guard) mmrag.pipelines.surf.write_db_captions"],
              run=lambda: write_db_captions(root, out, folders)),
        Stage("db", [f"{out}/db/manifest.json"], [py, "data_process/create_index.py", "--no-progress", *_dotlist(db)],
              run=lambda: _run_tool(root, "create_index", db), stale=[f"{out}/db"]),
        *pope_eval_stages(opt, "base"),
        Stage("surf_subset", [f"{out}/surf_data/llava_subset.json"],
              [f"mmrag.pipelines.surf.write_surf_subset count={opt.surf_samples} seed={opt.seed}"],
              run=lambda: write_surf_subset(root, opt.surf_samples, opt.seed, out)),
        Stage("surf_data", [f"{out}/surf_data/surf_train.json"],
              [py, "data_process/surf_build_data.py", "all", *_dotlist(surf_cfg)],
              run=lambda: _run_tool(root, "surf_build_data", surf_cfg),
              stale=[f"{out}/surf_data/{stage}" for stage in SURF_MODEL_STAGES]),
        surf_train_stage(opt),
        *pope_eval_stages(opt, "surf"),
        *pope_eval_stages(opt, "controls"),
        *vqa,
    ]


def run_surf(opt: SurfOptions, force: Sequence[str] = (), only: Optional[Sequence[str]] = None,
             root: Path = REPO_ROOT, report: bool = True) -> List[str]:
    """Run the stages (those in `only`, when given; 'report' names the report), then write the report."""
    from mmrag.pipelines.surf_report import write_report

    stages = surf_stages(opt, root)
    names = [n for n in (only or []) if n != "report"]
    ran = run_stages(stages, root, root / opt.out, force=force, only=names if only is not None else None)
    if report and (only is None or "report" in only):
        write_report(root, stages, opt, opt.report_target(root))
    return ran
