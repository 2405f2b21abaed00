"""Build a dense multimodal retrieval database (CLIP embeddings -> faiss) for an image-caption collection.

The config is the registered `create_index` defaults below (CLI: mmrag.cli.create_index, which also
takes a YAML via --cfg and key=value overrides). With `tiny_clip.steps > 0` the random CLIP of
`embedder.model_cfg` is first trained on the collection by the clip_pretrain task (the one training
path), and its recall on held-out items before and after is reported. An
interrupted run picks up at the first unfinished embedding shard and gives identical vectors.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from omegaconf import OmegaConf

from mmrag.common.errors import ConfigError
from mmrag.common.tool_config import register_tool
from mmrag.retrieval.clip_embedder import DEFAULT_EMBEDDER_CFG, ClipEmbedder, retrieval_recall
from mmrag.retrieval.dense_index import DEFAULT_INDEX_SPEC, build_database, embed_to_shards, load_collection

DEFAULTS: Dict[str, Any] = register_tool("create_index", {
    "captions": None,        # JSON list of {"image", "caption"} (a world's image_captions.json)
    "image_root": None,      # folder the "image" paths are relative to (default: the captions file's folder)
    "out_dir": None,         # database folder
    "modality": "image",     # what the rows embed: image | text (the caption)
    "shard_size": 4096,      # items per resumable embedding shard
    "embedder": DEFAULT_EMBEDDER_CFG,
    "index": DEFAULT_INDEX_SPEC,
    "tiny_clip": {
        "steps": 0,          # >0: train embedder.model_cfg from scratch (clip_pretrain task) before embedding
        "batch_size": 64,
        "lr": 1e-3,
        "holdout": 0.1,      # fraction of items (by id hash) kept out of training for the recall report
        "max_eval": 500,     # held-out items used for the recall report
    },
}, required=("captions", "out_dir"), choices={"modality": ["image", "text"]},
    open_keys=("embedder.model_cfg",))


def _is_held_out(item_id: str, fraction: float) -> bool:
    """A stable split by id hash: the same items are held out on every run."""
    return int(hashlib.md5(item_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


# trains the database's CLIP on the training items in `folder`; returns the embedder keys that load it.
# The clip_pretrain task does the training; it lives in a higher layer, so the caller passes it in
# (mmrag.cli.create_index passes mmrag.tasks.clip_pretrain's).
ClipTrainer = Callable[[Dict[str, Any], List[Dict[str, Any]], Path, bool], Dict[str, Any]]


def train_and_report(cfg: Dict[str, Any], items: List[Dict[str, Any]], train_clip: ClipTrainer,
                     progress: bool) -> Dict[str, Any]:
    """Train the database's CLIP on the non-held-out items; recall on held-out items before and after."""
    tc, root = cfg["tiny_clip"], Path(cfg["image_root"])
    train = [it for it in items if not _is_held_out(it["id"], tc["holdout"])]
    held = [it for it in items if _is_held_out(it["id"], tc["holdout"])][: tc["max_eval"]]
    paths, caps = [root / it["image"] for it in held], [it["caption"] for it in held]
    before = retrieval_recall(ClipEmbedder({**cfg["embedder"], "device": "cpu", "pretrained": None}), paths, caps)
    start = time.time()
    keys = train_clip(cfg, train, Path(cfg["out_dir"]) / "tiny_clip", progress)
    seconds = time.time() - start
    cfg["embedder"].update(keys)  # the database is embedded with the trained model
    after = retrieval_recall(ClipEmbedder({**cfg["embedder"], "device": "cpu"}), paths, caps)
    report = {"train_pairs": len(train), "held_out": len(held), "steps": tc["steps"],
              "train_seconds": round(seconds, 1), "model": keys, "before": before, "after": after}
    (Path(cfg["out_dir"]) / "tiny_clip_report.json").write_text(json.dumps(report, indent=2))
    return report


def with_image_root(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The config with `image_root` defaulted to the captions file's folder."""
    return {**cfg, "image_root": cfg["image_root"] or str(Path(cfg["captions"]).parent)}


def create_database(cfg: Dict[str, Any], progress: bool = True, train_clip: Optional[ClipTrainer] = None,
                    rank: int = 0, world_size: int = 1, barrier: Callable[[], None] = lambda: None) -> Optional[Path]:
    """Embed the collection (training its CLIP first with `train_clip` when tiny_clip.steps > 0) and
    build its database. Under several processes (`world_size`, e.g. torchrun) each embeds its own
    shards and rank 0 writes the index (other ranks return None)."""
    cfg = with_image_root(cfg)
    if world_size > 1 and cfg["tiny_clip"]["steps"] > 0:
        raise ConfigError("create_index: tiny_clip.steps > 0 trains in one process; train first (one process), "
                          "then embed under torchrun with embedder.model_name / pretrained set to the trained model")
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    items = load_collection(cfg["captions"], cfg["image_root"])
    if cfg["tiny_clip"]["steps"] > 0:
        if cfg["embedder"]["model_name"] or cfg["embedder"]["type"] != "open_clip":
            raise ConfigError("create_index: tiny_clip.steps > 0 needs embedder.type=open_clip with model_cfg (not model_name)")
        if train_clip is None:
            raise ConfigError("create_index: tiny_clip.steps > 0 trains with the clip_pretrain task: run "
                              "mmrag-create-index (python data_process/create_index.py)")
        print(json.dumps({"tiny_clip": train_and_report(cfg, items, train_clip, progress)}))
    start = time.time()
    embedder = ClipEmbedder(cfg["embedder"])
    vectors = embed_to_shards(embedder, items, out / "embeddings", cfg["modality"], cfg["image_root"],
                              cfg["shard_size"], progress=progress and rank == 0, rank=rank, world_size=world_size,
                              barrier=barrier)
    if vectors is None:
        return None
    build_database(out, vectors, items, cfg["index"], embedder.cfg, cfg["modality"], cfg["image_root"], progress)
    OmegaConf.save(OmegaConf.create(cfg), out / "create_index_config.yaml")
    print(json.dumps({"database": str(out), "rows": len(items), "dim": int(vectors.shape[1]),
                      "seconds": round(time.time() - start, 1)}))
    return out
