"""GeMKR's results table on the seeing base (issue 12, item 7): the default table's trainings and
evaluations (mmrag.pipelines.default: GeMKR constrained / unconstrained, no-regions and no-prefix
ablations, BM25, the dense dual encoder, paired bootstrap differences) run from the
`gemkr_seeing_large` configs, a real pretrained LLM (SmolLM2-135M-Instruct + LoRA) on the
world-trained CLIP tower, with every input the configs read prepared first:

- `clip`: the world CLIP (train_configs/clip_world_small.yaml), skipped when its folder or the
  converted tower is there (either can be carried to a fresh machine);
- `clip_tower`: its image tower as a CLIPVisionModel folder (mmrag.models.clip_conversion), the
  config's `model.vision_tower.path`, so GeMKR's region prefix runs inside its blocks;
- `corpus_index`: the suffix-array corpus index tokenised with the LLM's own tokenizer (the
  config's `index_path`; the clue targets are sampled from it when the dataset loads);
- `regions`: region features of every image from that tower (the config's `region_store`).

Paths come from the built experiment config (overrides included), so the stages write exactly what
the trainings read. Stages of one wave (the trainings; the evaluations) run `jobs` at a time as
subprocesses, each with OMP_NUM_THREADS=`threads`; `in_process` runs them one by one in this process
(tests). Writes `<out>/results.md`, `differences.json`, `report.md` and `report.json`.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mmrag.pipelines.default import _folder, table_stages, write_results
from mmrag.pipelines.prepare import (BUILD_INDEX, ENCODE_REGION, _regions_complete, build_corpus_index,
                                     encode_region_features)
from mmrag.pipelines.seeing import _in_process, eval_stage, train_stage
from mmrag.pipelines.stages import Stage, run_stages_by_wave, stage_report

UNCONSTRAINED = "GeMKR, no constraint"


@dataclass
class GemkrSeeingOptions:
    out: str = "output/gemkr_seeing_large"
    prefix: str = "gemkr_seeing_large"        # train_configs/<prefix>{,_noregion,_noprefix}.yaml and eval_configs
    overrides: List[str] = field(default_factory=list)       # key=value for every training and evaluation
    clip_dir: str = "output/clip_world_small/final"          # open_clip folder of the world CLIP
    clip_overrides: List[str] = field(default_factory=list)  # key=value for its training (when it runs)
    unconstrained: bool = True                # also the "no constraint" row (same model, unconstrained decoding)
    quick: bool = False                       # the default table's quick budget (40 steps, 40 questions)
    jobs: int = 1                             # stages of one wave run at once (subprocesses)
    threads: Optional[int] = None             # OMP_NUM_THREADS of each subprocess
    region_workers: int = 4                   # image-decoding processes of the region encoder
    in_process: bool = False                  # run trainings / evaluations in this process, one by one


def experiment_paths(root: Path, opt: GemkrSeeingOptions) -> Dict[str, str]:
    """What the main training config reads, after the overrides: tower, tokenizer, world, index, regions."""
    from omegaconf import OmegaConf

    import mmrag  # noqa: F401  (registers the config defaults of every component)
    from mmrag.common.config import build_config
    from mmrag.processors.tokenizers import tokenizer_dir

    cfg = build_config(str(root / f"train_configs/{opt.prefix}.yaml"), list(opt.overrides))
    ds = cfg.datasets.gemkr_knowledge
    return {"tower": str(cfg.model.vision_tower.path), "index": str(ds.index_path), "regions": str(ds.region_store),
            "world": str(Path(ds.image_root).parent),
            "tokenizer": str(tokenizer_dir(OmegaConf.to_container(cfg.model.llm, resolve=True)))}


def input_stages(root: Path, opt: GemkrSeeingOptions) -> List[Stage]:
    """World CLIP, its tower as a CLIPVisionModel, the LLM-tokenised corpus index, region features."""
    from mmrag.models.clip_conversion import convert_open_clip_folder

    p, py, cli = experiment_paths(root, opt), sys.executable, [sys.executable, "-m", "mmrag.cli.run_gemkr_seeing"]
    world, clip = p["world"], Path(opt.clip_dir)
    corpus_cfg = {**BUILD_INDEX, "corpus": str(root / world / "corpus.csv"), "tokenizer": str(root / p["tokenizer"]),
                  "out": str(root / p["index"])}
    region_cfg = {**ENCODE_REGION, "cfg_path": str(root / f"train_configs/{opt.prefix}.yaml"),
                  "options": list(opt.overrides), "image_root": str(root / world), "out": str(root / p["regions"]),
                  "detections": str(root / world / "annotations/detections_{split}.json"),
                  "instances": str(root / world / "annotations/instances_{split}.json"),
                  "workers": opt.region_workers}
    # the world CLIP is trained only when neither it nor its converted tower is there (either can be carried)
    train_clip = Stage("clip", [str(clip / "open_clip_model.safetensors")],
                       [py, "train.py", "--cfg-path", "train_configs/clip_world_small.yaml",
                        f"run.output_dir={clip.parent}", *opt.clip_overrides],
                       log_file=f"{_folder(root / opt.out, root)}/train_clip.log")
    first = [] if (root / p["tower"] / "config.json").is_file() else [train_clip]
    return first + [
        Stage("clip_tower", [f"{p['tower']}/config.json"], [*cli, "--only", "clip_tower"],
              run=lambda: convert_open_clip_folder(root / clip, root / p["tower"]), stale=[p["tower"]]),
        Stage("corpus_index", [f"{p['index']}/header.json"],
              [py, "data_process/build_index.py", "--corpus", f"{world}/corpus.csv", "--tokenizer", p["tokenizer"],
               "--out", p["index"]], run=lambda: print(build_corpus_index(corpus_cfg)), stale=[p["index"]]),
        Stage("regions", [f"{p['regions']}/index.json"], [*cli, "--only", "regions"],
              run=lambda: print("\n".join(encode_region_features(region_cfg))),
              complete=lambda: _regions_complete(root / world, root / p["regions"]), stale=[p["regions"]]),
    ]


def build_table_stages(root: Path, opt: GemkrSeeingOptions) -> List[Tuple[Stage, Optional[str]]]:
    """The default table's (stage, row label) pairs from this setting's configs, with the options applied."""
    pairs = table_stages("default", _folder(root / opt.out, root), opt.quick, ablations=True, prefix=opt.prefix,
                         overrides=opt.overrides)
    pairs = [(s, label) for s, label in pairs if opt.unconstrained or label != UNCONSTRAINED]
    for stage, _ in pairs:
        if opt.in_process:
            stage.run = _in_process(train_stage if label_is_training(stage) else eval_stage, root, stage.command)
        elif opt.threads:
            stage.env = {"OMP_NUM_THREADS": str(opt.threads), "MKL_NUM_THREADS": str(opt.threads)}
    return pairs


def label_is_training(stage: Stage) -> bool:
    return stage.name.startswith("train_")


def write_report(root: Path, opt: GemkrSeeingOptions, pairs, stages: Sequence[Stage], seconds: float) -> Dict:
    """results.md / differences.json (default.write_results), then report.md and report.json."""
    out = root / opt.out
    rows = [(label, root / stage.outputs[0]) for stage, label in pairs if label]
    table = write_results(rows, out)
    summaries = {label: json.loads(Path(path).read_text()) for label, path in rows}
    diffs = json.loads((out / "differences.json").read_text()) if (out / "differences.json").is_file() else {}
    n = {len(json.loads(Path(path).with_name("retrieval_per_query.json").read_text())) for _, path in rows}
    report = {"setting": opt.prefix, "questions": sorted(n), "overrides": list(opt.overrides), "quick": opt.quick,
              "seconds": round(seconds, 1), "summaries": summaries, "differences": diffs}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    text = (f"# GeMKR on the seeing base ({opt.prefix})\n\n{'/'.join(map(str, sorted(n)))} test questions; "
            f"train_configs/{opt.prefix}*.yaml, eval_configs/{opt.prefix}*.yaml"
            + (f"; overrides: {' '.join(opt.overrides)}" if opt.overrides else "") + "\n\n"
            + table + "\n\nStages (seconds of the latest run):\n\n" + "\n".join(stage_report(stages, out)) + "\n")
    (out / "report.md").write_text(text)
    return report


def run_gemkr_seeing(opt: GemkrSeeingOptions, root: Path = Path("."), force: Sequence[str] = (),
                     only: Optional[Sequence[str]] = None) -> Optional[Dict]:
    """Prepare, train (one wave), evaluate (one wave), report; returns report.json's content (None
    when `only` picked stages and the report was not asked for)."""
    root = Path(root)
    (root / opt.out).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    inputs, pairs = input_stages(root, opt), build_table_stages(root, opt)
    trainings = [s for s, label in pairs if not label]
    evaluations = [s for s, label in pairs if label]
    waves = [*([s] for s in inputs), trainings, evaluations]
    run_stages_by_wave(waves, root, root / opt.out, opt.jobs, force,
                       [n for n in only if n != "report"] if only else None)
    if only and "report" not in only:
        return None
    return write_report(root, opt, pairs, [*inputs, *trainings, *evaluations], time.time() - t0)
