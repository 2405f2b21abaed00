"""Build the dense multimodal retrieval database (CLIP embeddings -> faiss) for a collection.

    # the default tiny CLIP, trained for 300 CPU steps on the world's image-caption pairs first (by the
    # clip_pretrain task; weights in open_clip's format in <out>/tiny_clip/final):
    python data_process/create_index.py --world dataset/world_small --out outputs/db/world_small \
        --train-tiny-clip 300
    # on 8 GPUs: every process embeds its own shards (resumable under any process count), rank 0
    # writes the index; the vectors equal a one-process run's
    torchrun --nproc_per_node 8 -m mmrag.cli.create_index --cfg my_db.yaml
    # a real CLIP from local weights, IVF index in shards of 1M rows, from a YAML + overrides:
    python data_process/create_index.py --cfg my_db.yaml embedder.model_name=ViT-L-14 \
        embedder.pretrained=/models/vit_l14_openai.bin index.type=ivf index.shard_rows=1000000
    # on a GPU machine: nvJPEG decode with 40% of the images decoded by PIL in 14 workers, batches of
    # 512 (~2,600 images/s for ViT-L/14 on an H200, docs/PERFORMANCE.md)
    python data_process/create_index.py --cfg my_db.yaml embedder.decode=gpu embedder.cpu_decode_share=0.4 \
        embedder.num_workers=14 embedder.batch_size=512

Config keys: the registered `create_index` defaults (mmrag.retrieval.dense_database), set by a YAML
(--cfg), then key=value overrides, then the flags. An interrupted run picks up at the first
unfinished embedding shard and gives identical vectors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from mmrag.cli._args import tool_parser
from mmrag.common.cli import exit_on_user_error
from mmrag.common.tool_config import load_tool_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.retrieval.dense_database import create_database
    from mmrag.runners import distributed
    from mmrag.tasks.clip_pretrain import database_clip_trainer

    parser = tool_parser(__doc__)
    parser.add_argument("--world", help="a world folder: captions=<world>/image_captions.json, image_root=<world>")
    parser.add_argument("--out", help="database folder (out_dir)")
    parser.add_argument("--train-tiny-clip", type=int, metavar="STEPS", help="tiny_clip.steps")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_intermixed_args(None if argv is None else list(argv))
    world = {"captions": str(Path(args.world) / "image_captions.json"), "image_root": str(args.world)} if args.world else {}
    flags = {**world, "out_dir": args.out, "tiny_clip.steps": args.train_tiny_clip}
    with exit_on_user_error():
        cfg = load_tool_config("create_index", args.cfg, args.overrides, flags)
        ranks = distributed.init_distributed(cfg["embedder"].get("device", "auto"))  # a job of one without torchrun
        try:
            create_database(cfg, progress=not args.no_progress, train_clip=database_clip_trainer, rank=ranks.rank,
                            world_size=ranks.world, barrier=lambda: distributed.barrier(ranks))
        finally:
            distributed.shutdown(ranks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
