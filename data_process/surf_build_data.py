"""SURf training-data construction, stage by stage (each resumable; the heavy ones chunkable).

    S="python data_process/surf_build_data.py --cfg configs/surf_data.yaml"
    $S split                       # LLaVA multi-turn -> single_turn.jsonl
    $S retrieve --chunk 0/4        # ... one process per chunk i/n; re-run a killed one as is
    $S initial  --chunk 0/4        # frozen model, question image only
    $S reanswer --chunk 0/4        # one answer per retrieved item
    $S evaluate --chunk 0/4        # tool evaluation -> labels
    $S group                       # pairs -> questions (checks every rank is there)
    $S select                      # mixed-label questions -> <work_dir>/surf_train.json
    $S all                         # everything above in one process (chunk 0/1)

Config keys (YAML via --cfg, then key=value overrides): see DEFAULT_CFG. The model is any
`answerer.target` = "package.module:factory" returning an object with `answer(batch) -> [str]`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from mmrag.surf import construct  # noqa: E402
from mmrag.surf.answerer import Answerer, load_answerer  # noqa: E402
from mmrag.surf.stage_io import parse_chunk, read_jsonl, read_stage, run_chunked_stage, write_jsonl  # noqa: E402
from mmrag.surf.tool_eval import build_similarity_scorer  # noqa: E402

DEFAULT_CFG: Dict[str, Any] = {
    "llava": None,            # LLaVA-format JSON list (multi-turn conversations)
    "image_root": None,       # folder the LLaVA "image" paths are relative to
    "database": None,         # a DenseIndex folder (data_process/create_index.py)
    "work_dir": None,         # stage outputs
    "k": 5,                   # retrieved items per question (each one re-answered)
    "batch_size": 16,         # requests per answerer call
    "answerer": {"target": None, "kwargs": {}},
    "similarity": {"bertscore_model": None, "bertscore_layer": None, "use_minilm": True},
    "max_samples": 2000,
    "seed": 0,
}
STAGES = ("split", "retrieve", "initial", "reanswer", "evaluate", "group", "select", "all")


class RootedAnswerer:
    """Resolves image paths relative to `image_root` before they reach the model."""

    def __init__(self, inner: Answerer, image_root: Path) -> None:
        self.inner, self.image_root = inner, image_root

    def answer(self, batch: Sequence[Dict[str, Any]]) -> List[str]:
        rooted = [{**req, "images": [str(self.image_root / p) for p in req["images"]]} for req in batch]
        return self.inner.answer(rooted)


def load_cfg(cfg_file: str | None, overrides: Sequence[str]) -> Dict[str, Any]:
    cfg = OmegaConf.create(DEFAULT_CFG)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_struct(cfg.answerer.kwargs, False)  # the model factory's own arguments
    if cfg_file:
        cfg = OmegaConf.merge(cfg, OmegaConf.load(cfg_file))
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    plain = OmegaConf.to_container(cfg, resolve=True)
    if not plain["work_dir"]:
        raise SystemExit("surf_build_data: config key 'work_dir' is required")
    plain["image_root"] = plain["image_root"] or (str(Path(plain["llava"]).parent) if plain["llava"] else ".")
    return plain


def _answerer(cfg: Dict[str, Any]) -> Answerer:
    if not cfg["answerer"]["target"]:
        raise SystemExit("surf_build_data: config key 'answerer.target' (package.module:factory) is required for this stage")
    return RootedAnswerer(load_answerer(cfg["answerer"]["target"], **cfg["answerer"]["kwargs"]), Path(cfg["image_root"]))


def _relative(path: Path, root: Path) -> str:
    """`path` relative to the image root when it lies under it (portable samples), else absolute."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def make_search(cfg: Dict[str, Any]):
    """search(image_paths, k) over the configured database, query image excluded."""
    from mmrag.retrieval.dense_index import DenseIndex

    index, root = DenseIndex.load(cfg["database"]), Path(cfg["image_root"])

    def search(paths: List[str], k: int) -> List[List[Dict[str, Any]]]:
        results = index.search_by_image([root / p for p in paths], k, exclude_self=True)
        return [[{"id": h.id, "image": _relative(index.image_path(h), root), "caption": h.meta.get("caption", ""),
                  "score": h.score} for h in hits] for hits in results.hits]

    return search


def run(stage: str, cfg: Dict[str, Any], chunk: tuple) -> None:
    """Run one stage (or all of them) with this process's chunk."""
    work = Path(cfg["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    bs, qid = cfg["batch_size"], (lambda r: r["qid"])
    if stage in ("split", "all"):
        write_jsonl(work / "single_turn.jsonl", construct.split_turns(json.loads(Path(cfg["llava"]).read_text())))
    if stage in ("retrieve", "all"):
        search = make_search(cfg)
        run_chunked_stage(read_jsonl(work / "single_turn.jsonl"), work, "retrieved",
                          lambda b: construct.retrieve(b, search, cfg["k"]), qid, chunk, bs)
    if stage in ("initial", "all"):
        model = _answerer(cfg)
        run_chunked_stage(read_stage(work, "retrieved"), work, "initial",
                          lambda b: construct.initial_answers(b, model), qid, chunk, bs)
    if stage in ("reanswer", "all"):
        model = _answerer(cfg) if stage != "all" else model
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


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--cfg", help="YAML with keys of DEFAULT_CFG")
    ap.add_argument("--chunk", default="0/1", help="i/n: handle the i-th of n slices (retrieve/initial/reanswer/evaluate)")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = ap.parse_intermixed_args(list(argv))  # the stage, --chunk and overrides in any order
    chunk = parse_chunk(args.chunk)
    if args.stage == "all" and chunk != (0, 1):
        raise SystemExit("surf_build_data: 'all' runs every stage in one process; use --chunk with single stages")
    run(args.stage, load_cfg(args.cfg, args.overrides), chunk)


if __name__ == "__main__":
    main(sys.argv[1:])
