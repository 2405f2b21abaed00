"""Encode the detected regions of every image with the configured frozen vision tower.

    python data_process/encode_region.py --cfg-path train_configs/gemkr_tiny_world.yaml \
        --detections dataset/world_small/annotations/detections_{split}.json \
        --instances dataset/world_small/annotations/instances_{split}.json \
        --image-root dataset/world_small --splits train test --out index/world_small/regions

Boxes come in COCO detection-results format ({image_id, bbox [x,y,w,h], score}); YOLO output
converted to that format works the same. Interrupted runs resume at the first missing shard.
`--options` overrides the experiment config (a.b=c); trailing key=value words set this tool's keys
(top_k=5) and must come before --options.
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error

FLAGS = {a: a for a in ("cfg_path", "options", "detections", "instances", "image_root", "splits", "out", "top_k",
                        "batch_size", "shard_size", "workers")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.prepare import encode_region_features

    parser = tool_parser(__doc__)
    parser.add_argument("--cfg-path", help="experiment YAML whose model.vision_tower is used")
    parser.add_argument("--options", nargs="*", help="experiment config overrides a.b=c, e.g. model.vision_tower.path=...")
    parser.add_argument("--detections", help="COCO detection results; may contain {split}")
    parser.add_argument("--instances", help="COCO instances (image file names); may contain {split}")
    parser.add_argument("--image-root")
    parser.add_argument("--splits", nargs="+")
    parser.add_argument("--out")
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--shard-size", type=int)
    parser.add_argument("--workers", type=int, help="image decoding processes")
    with exit_on_user_error():
        for line in encode_region_features(tool_config("encode_region", parser, argv, FLAGS)):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
