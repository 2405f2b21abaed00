"""SURf training-data construction, stage by stage (each resumable; the heavy ones chunkable):

    split     LLaVA multi-turn -> single_turn.jsonl
    retrieve  nearest database items of each question image (the query itself excluded)
    initial   the frozen model's answer from the question image only
    reanswer  one answer per retrieved item
    evaluate  tool evaluation of each re-answer -> labels
    group     pairs -> questions (checks every chunk is there)
    select    mixed-label questions -> <work_dir>/surf_train.json
    all       everything above in one process (chunk 0/1)

Config: the registered `surf_build_data` defaults below (CLI: mmrag.cli.surf_build_data). The model
is any `answerer.target` = "package.module:factory" returning an object with `answer(batch) -> [str]`;
the database is searched through the image-database Retriever (mmrag.retrievers.image_database).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from mmrag.common.errors import ConfigError
from mmrag.common.tool_config import register_tool
from mmrag.surf import construct
from mmrag.surf.answerer import Answerer, load_answerer
from mmrag.common.jsonl import write_jsonl
from mmrag.surf.stage_io import read_jsonl, read_stage, run_chunked_stage
from mmrag.surf.tool_eval import build_similarity_scorer

STAGES = ("split", "retrieve", "initial", "reanswer", "evaluate", "group", "select", "all")
DEFAULTS = register_tool("surf_build_data", {
    "llava": None,            # LLaVA-format JSON list (multi-turn conversations)
    "image_root": None,       # folder the LLaVA "image" paths are relative to (default: the llava file's folder)
    "database": None,         # a DenseIndex folder (mmrag.cli.create_index)
    "work_dir": None,         # stage outputs
    "k": 5,                   # retrieved items per question (each one re-answered)
    "batch_size": 16,         # requests per answerer call
    "answerer": {"target": None, "kwargs": {}},
    "similarity": {"bertscore_model": None, "bertscore_layer": None, "use_minilm": True},
    "max_samples": 2000,
    "seed": 0,
}, required=("work_dir",), open_keys=("answerer.kwargs",))


class RootedAnswerer:
    """Resolves image paths relative to `image_root` before they reach the model."""

    def __init__(self, inner: Answerer, image_root: Path) -> None:
        self.inner, self.image_root = inner, image_root

    def answer(self, batch: Sequence[Dict[str, Any]]) -> List[str]:
        rooted = [{**req, "images": [str(self.image_root / p) for p in req["images"]]} for req in batch]
        return self.inner.answer(rooted)


def with_image_root(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The config with `image_root` defaulted to the LLaVA file's folder."""
    root = cfg["image_root"] or (str(Path(cfg["llava"]).parent) if cfg["llava"] else ".")
    return {**cfg, "image_root": root}


def _answerer(cfg: Dict[str, Any]) -> Answerer:
    if not cfg["answerer"]["target"]:
        raise ConfigError("surf_build_data: config key 'answerer.target' (package.module:factory) is required for this stage")
    return RootedAnswerer(load_answerer(cfg["answerer"]["target"], **cfg["answerer"]["kwargs"]), Path(cfg["image_root"]))


def make_retriever(cfg: Dict[str, Any]):
    """The image-database Retriever over the configured database (hits carry absolute image paths)."""
    from mmrag.retrievers.base import build_retriever

    if not cfg["database"]:
        raise ConfigError("surf_build_data: config key 'database' (a DenseIndex folder) is required for 'retrieve'")
    return build_retriever("image_database", {"database": cfg["database"]})


def run(stage: str, cfg: Dict[str, Any], chunk: Tuple[int, int] = (0, 1)) -> None:
    """Run one stage (or all of them) with this process's chunk."""
    if stage not in STAGES:
        raise ConfigError(f"surf_build_data: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if stage == "all" and chunk != (0, 1):
        raise ConfigError("surf_build_data: 'all' runs every stage in one process; use --chunk with single stages")
    cfg = with_image_root(cfg)
    work = Path(cfg["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    bs, qid, model = cfg["batch_size"], (lambda r: r["qid"]), None
    if stage in ("split", "all"):
        write_jsonl(work / "single_turn.jsonl", construct.split_turns(json.loads(Path(cfg["llava"]).read_text())))
    if stage in ("retrieve", "all"):
        retriever = make_retriever(cfg)
        run_chunked_stage(read_jsonl(work / "single_turn.jsonl"), work, "retrieved",
                          lambda b: construct.retrieve(b, retriever, cfg["k"], cfg["image_root"]), qid, chunk, bs)
    if stage in ("initial", "all"):
        model = _answerer(cfg)
        run_chunked_stage(read_stage(work, "retrieved"), work, "initial",
                          lambda b: construct.initial_answers(b, model), qid, chunk, bs)
    if stage in ("reanswer", "all"):
        model = model or _answerer(cfg)
        pairs = construct.expand_pairs(read_stage(work, "initial"))
        run_chunked_stage(pairs, work, "reanswer", lambda b: construct.reanswer_pairs(b, model), construct.pair_key, chunk, bs)
    if stage in ("evaluate", "all"):
        scorer = build_similarity_scorer(cfg["similarity"])
        run_chunked_stage(read_stage(work, "reanswer"), work, "evaluated",
                          lambda b: construct.evaluate_pairs(b, scorer), construct.pair_key, chunk, bs)
    if stage in ("group", "all"):
        write_jsonl(work / "grouped.jsonl", construct.group_by_question(read_stage(work, "evaluated")))
    if stage in ("select", "all"):
        samples = construct.select_pairs(read_jsonl(work / "grouped.jsonl"), cfg["max_samples"], cfg["seed"])
        (work / "surf_train.json").write_text(json.dumps(samples, indent=1, ensure_ascii=False))
        print(json.dumps({"surf_train": str(work / "surf_train.json"), "samples": len(samples)}))
