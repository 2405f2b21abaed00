"""Build the dense multimodal retrieval database (CLIP embeddings -> faiss) for a collection.

    # the default tiny CLIP, trained for 300 CPU steps on the world's image-caption pairs first:
    python data_process/create_index.py --world dataset/world_small --out outputs/db/world_small \
        --train-tiny-clip 300
    # a real CLIP from local weights, IVF index in shards of 1M rows, from a YAML + overrides:
    python data_process/create_index.py --cfg my_db.yaml embedder.model_name=ViT-L-14 \
        embedder.pretrained=/models/vit_l14_openai.bin index.type=ivf index.shard_rows=1000000
    # on a GPU machine: nvJPEG decode with 40% of the images decoded by PIL in 14 workers, batches of
    # 512 (~2,600 images/s for ViT-L/14 on an H200, docs/PERFORMANCE.md)
    python data_process/create_index.py --cfg my_db.yaml embedder.decode=gpu embedder.cpu_decode_share=0.4 \
        embedder.num_workers=14 embedder.batch_size=512

Config keys (YAML file via --cfg, then key=value overrides, then flags): see DEFAULT_CFG below.
An interrupted run picks up at the first unfinished embedding shard and gives identical vectors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from mmrag.retrieval.clip_embedder import (  # noqa: E402
    DEFAULT_EMBEDDER_CFG,
    ClipEmbedder,
    retrieval_recall,
    train_tiny_clip,
)
from mmrag.retrieval.dense_index import (  # noqa: E402
    DEFAULT_INDEX_SPEC,
    build_database,
    embed_to_shards,
    load_collection,
)

DEFAULT_CFG: Dict[str, Any] = {
    "captions": None,        # JSON list of {"image", "caption"} (a world's image_captions.json)
    "image_root": None,      # folder the "image" paths are relative to (default: the captions file's folder)
    "out_dir": None,         # database folder
    "modality": "image",     # what the rows embed: image | text (the caption)
    "shard_size": 4096,      # items per resumable embedding shard
    "embedder": DEFAULT_EMBEDDER_CFG,
    "index": DEFAULT_INDEX_SPEC,
    "tiny_clip": {
        "steps": 0,          # >0: train the tiny random CLIP on the collection before embedding
        "batch_size": 64,
        "lr": 1e-3,
        "holdout": 0.1,      # fraction of items (by id hash) kept out of training for the recall report
        "max_eval": 500,     # held-out items used for the recall report
    },
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", help="YAML with keys of DEFAULT_CFG")
    ap.add_argument("--world", help="a world folder: sets captions=<world>/image_captions.json, image_root=<world>")
    ap.add_argument("--out", help="database folder (out_dir)")
    ap.add_argument("--train-tiny-clip", type=int, metavar="STEPS", help="tiny_clip.steps")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. index.type=hnsw")
    return ap.parse_intermixed_args(argv)


def load_cfg(args: argparse.Namespace) -> Dict[str, Any]:
    """DEFAULT_CFG <- --cfg YAML <- key=value overrides <- flags; unknown keys are an error."""
    cfg = OmegaConf.create(DEFAULT_CFG)
    OmegaConf.set_struct(cfg, True)  # unknown keys raise, naming the key
    OmegaConf.set_struct(cfg.embedder.model_cfg, False)  # an architecture dict is open-ended
    if args.cfg:
        cfg = OmegaConf.merge(cfg, OmegaConf.load(args.cfg))
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(args.overrides)))
    if args.world:
        cfg.captions = str(Path(args.world) / "image_captions.json")
        cfg.image_root = str(args.world)
    if args.out:
        cfg.out_dir = args.out
    if args.train_tiny_clip is not None:
        cfg.tiny_clip.steps = args.train_tiny_clip
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("captions", "out_dir"):
        if not plain[key]:
            raise SystemExit(f"create_index: config key '{key}' is required (or pass --world / --out)")
    plain["image_root"] = plain["image_root"] or str(Path(plain["captions"]).parent)
    return plain


def _is_held_out(item_id: str, fraction: float) -> bool:
    """A stable split by id hash: the same items are held out on every run."""
    return int(hashlib.md5(item_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def train_and_report(cfg: Dict[str, Any], items: List[Dict[str, Any]], progress: bool) -> Dict[str, Any]:
    """Train the tiny CLIP on the non-held-out items; recall on held-out items before and after."""
    tc, root = cfg["tiny_clip"], Path(cfg["image_root"])
    train = [(root / it["image"], it["caption"]) for it in items if not _is_held_out(it["id"], tc["holdout"])]
    held = [it for it in items if _is_held_out(it["id"], tc["holdout"])][: tc["max_eval"]]
    paths, caps = [root / it["image"] for it in held], [it["caption"] for it in held]
    eval_cfg = {**cfg["embedder"], "device": "cpu", "pretrained": None}
    before = retrieval_recall(ClipEmbedder(eval_cfg), paths, caps)
    weights = Path(cfg["out_dir"]) / "tiny_clip.safetensors"
    result = train_tiny_clip(train, weights, steps=tc["steps"], batch_size=tc["batch_size"], lr=tc["lr"],
                             model_cfg=cfg["embedder"]["model_cfg"], seed=cfg["embedder"]["seed"], progress=progress)
    after = retrieval_recall(ClipEmbedder({**eval_cfg, "pretrained": str(weights)}), paths, caps)
    cfg["embedder"]["pretrained"] = str(weights.resolve())  # the manifest must work from any cwd
    report = {"train_pairs": len(train), "held_out": len(held), "steps": result.steps,
              "final_loss": result.final_loss, "train_seconds": round(result.seconds, 1),
              "before": before, "after": after}
    (Path(cfg["out_dir"]) / "tiny_clip_report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: Sequence[str] = ()) -> Path:
    args = parse_args(list(argv))
    cfg = load_cfg(args)
    progress = not args.no_progress
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    items = load_collection(cfg["captions"], cfg["image_root"])
    if cfg["tiny_clip"]["steps"] > 0:
        if cfg["embedder"]["model_name"] or cfg["embedder"]["type"] != "open_clip":
            raise SystemExit("create_index: tiny_clip.steps > 0 needs embedder.type=open_clip with model_cfg (not model_name)")
        print(json.dumps({"tiny_clip": train_and_report(cfg, items, progress)}))
    start = time.time()
    embedder = ClipEmbedder(cfg["embedder"])
    vectors = embed_to_shards(embedder, items, out / "embeddings", cfg["modality"], cfg["image_root"],
                              cfg["shard_size"], progress=progress)
    build_database(out, vectors, items, cfg["index"], embedder.cfg, cfg["modality"], cfg["image_root"], progress)
    OmegaConf.save(OmegaConf.create(cfg), out / "create_index_config.yaml")
    print(json.dumps({"database": str(out), "rows": len(items), "dim": int(vectors.shape[1]),
                      "seconds": round(time.time() - start, 1)}))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
