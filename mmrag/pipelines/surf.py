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
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set

from mmrag.common.errors import UserError
from mmrag.pipelines.stages import Stage, run_stages
from mmrag.pipelines.surf_layout import BASE_CKPT, BASE_OUT, OUT, POPE_SPLITS, SURF_CKPT, WORLD, YESNO

REPO_ROOT = Path(__file__).resolve().parents[2]
# the construction stages that hold the answering model's output (split / retrieve do not)
SURF_MODEL_STAGES = ("initial.*", "reanswer.*", "evaluated.*", "grouped.jsonl", "surf_train.json")
# (stage, eval config, extra overrides): POPE rows, then knowledge-VQA rows
POPE_EVALS = [("pope_base_none", "pope_zeroshot", []), ("pope_base_rag", "pope_rag", []),
              ("pope_surf_rag", "pope_surf_rag", []), ("pope_surf_none", "pope_surf_rag", ["evaluation.retrieval.mode=none"])]
VQA_EVALS = [("vqa_base_none", "world_vqa_zeroshot", []), ("vqa_base_rag", "world_vqa_rag", []),
             ("vqa_surf_rag", "world_vqa_surf_rag", []), ("vqa_surf_none", "world_vqa_surf_rag", ["evaluation.retrieval.mode=none"])]


class LeakageError(UserError, RuntimeError):
    """A test image would enter the retrieval database: names the image."""


@dataclass
class SurfOptions:
    clip_steps: int = 200        # tiny CLIP training steps (batch 64)
    surf_samples: int = 200      # training conversations for SURf construction
    surf_k: int = 4              # retrieved items re-answered per question
    pope_max: int = 600          # first questions of each POPE split (0: all)
    vqa_max: int = 600           # first knowledge-VQA questions (0: all)
    seed: int = 0


# ----------------------------------------------------------------------------- the leakage guard
def _images(records: Iterable[dict]) -> Set[str]:
    return {r["image"] for r in records if r.get("image")}


def held_out_images(world: Path) -> Set[str]:
    """Every image a test question is asked about, as world-relative paths ('images/<file>')."""
    test = _images(json.loads((world / "llava/instruct_test.json").read_text()))
    for split in POPE_SPLITS:
        pope = world / "pope" / f"{split}.jsonl"
        if pope.is_file():
            test |= {f"images/{json.loads(line)['image']}" for line in pope.read_text().splitlines() if line.strip()}
    return test


def training_captions(world: Path) -> List[dict]:
    """The world's image-caption pairs of the training conversations' images; raises LeakageError if
    any of them is a test image."""
    train_images = _images(json.loads((world / "llava/instruct_train.json").read_text()))
    pairs = [p for p in json.loads((world / "image_captions.json").read_text()) if p["image"] in train_images]
    leaked = sorted({p["image"] for p in pairs} & held_out_images(world))
    if leaked:
        raise LeakageError(f"{world}: {len(leaked)} test images would enter the database, e.g. {leaked[0]}")
    return pairs


def write_db_captions(root: Path) -> None:
    pairs = training_captions(root / WORLD)
    out = root / OUT / "db_captions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(pairs, indent=1))
    print(f"db captions: {len(pairs)} training images -> {out}")


def write_surf_subset(root: Path, count: int, seed: int) -> None:
    """A seeded random subset of the training conversations (with an image) for SURf data construction."""
    samples = [s for s in json.loads((root / WORLD / "llava/instruct_train.json").read_text()) if s.get("image")]
    keep = sorted(random.Random(seed).sample(range(len(samples)), min(count, len(samples))))
    out = root / OUT / "surf_data" / "llava_subset.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([samples[i] for i in keep], indent=1))
    print(f"surf subset: {len(keep)} of {len(samples)} training conversations -> {out}")


# ----------------------------------------------------------------------------- the stages
def _eval_stage(name: str, cfg: str, extra: Sequence[str], max_samples: int) -> Stage:
    limit = [f"evaluation.max_samples={max_samples}"] if max_samples else []
    out = f"{OUT}/{name}"
    return Stage(name, [f"{out}/results.json"], [sys.executable, "eval.py", "--cfg-path", f"eval_configs/{cfg}.yaml",
                                                 f"run.output_dir={out}", *extra, *limit])


def _surf_data_cfg(opt: SurfOptions) -> dict:
    return {"llava": f"{OUT}/surf_data/llava_subset.json", "image_root": WORLD, "database": f"{OUT}/db",
            "work_dir": f"{OUT}/surf_data", "k": opt.surf_k, "batch_size": 32,
            "answerer": {"target": "mmrag.pipelines.answerers:model_answerer",
                         "kwargs": {"cfg_path": "train_configs/llava_tiny_world.yaml", "checkpoint": BASE_CKPT,
                                    "max_new_tokens": 24, "batch_size": 32, "progress": False}}}


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


def surf_stages(opt: SurfOptions, root: Path = REPO_ROOT) -> List[Stage]:
    py = sys.executable
    yesno = {"world": WORLD, "per_image": 2, "seed": opt.seed}
    db = {"captions": f"{OUT}/db_captions.json", "image_root": WORLD, "out_dir": f"{OUT}/db",
          "tiny_clip": {"steps": opt.clip_steps}}
    surf_cfg = _surf_data_cfg(opt)
    return [
        Stage("yesno_data", [YESNO.format(split="train"), YESNO.format(split="test")],
              [py, "data_process/make_pope_style_train.py", *_dotlist(yesno)],
              run=lambda: _run_tool(root, "make_pope_style_train", yesno)),
        Stage("base_train", [f"{BASE_CKPT}/trainable.safetensors", f"{BASE_OUT}/metrics.json"],
              [py, "train.py", "--cfg-path", "train_configs/llava_tiny_world.yaml", "run.progress=false"],
              stale=[f"{BASE_OUT}/metrics.jsonl"]),
        Stage("db_captions", [f"{OUT}/db_captions.json"], ["(leakage guard) mmrag.pipelines.surf.write_db_captions"],
              run=lambda: write_db_captions(root)),
        Stage("db", [f"{OUT}/db/manifest.json"], [py, "data_process/create_index.py", "--no-progress", *_dotlist(db)],
              run=lambda: _run_tool(root, "create_index", db), stale=[f"{OUT}/db"]),
        *[_eval_stage(n, c, e, opt.pope_max) for n, c, e in POPE_EVALS[:2]],
        Stage("surf_subset", [f"{OUT}/surf_data/llava_subset.json"],
              [f"mmrag.pipelines.surf.write_surf_subset count={opt.surf_samples} seed={opt.seed}"],
              run=lambda: write_surf_subset(root, opt.surf_samples, opt.seed)),
        Stage("surf_data", [f"{OUT}/surf_data/surf_train.json"],
              [py, "data_process/surf_build_data.py", "all", *_dotlist(surf_cfg)],
              run=lambda: _run_tool(root, "surf_build_data", surf_cfg),
              stale=[f"{OUT}/surf_data/{stage}" for stage in SURF_MODEL_STAGES]),
        Stage("surf_train", [f"{SURF_CKPT}/trainable.safetensors"],
              [py, "train.py", "--cfg-path", "train_configs/surf_tiny_world.yaml", "run.progress=false"],
              stale=[f"{OUT}/surf_model/metrics.jsonl"]),
        *[_eval_stage(n, c, e, opt.pope_max) for n, c, e in POPE_EVALS[2:]],
        *[_eval_stage(n, c, e, opt.vqa_max) for n, c, e in VQA_EVALS],
    ]


def run_surf(opt: SurfOptions, force: Sequence[str] = (), only: Optional[Sequence[str]] = None,
             root: Path = REPO_ROOT, report: bool = True) -> List[str]:
    """Run the stages (those in `only`, when given; 'report' names the report), then write the report."""
    from mmrag.pipelines.surf_report import write_report

    stages = surf_stages(opt, root)
    names = [n for n in (only or []) if n != "report"]
    ran = run_stages(stages, root, root / OUT, force=force, only=names if only is not None else None)
    if report and (only is None or "report" in only):
        write_report(root, stages, opt)
    return ran
