"""Encode the detected regions of every image with the configured frozen vision tower.

    python data_process/encode_region.py --cfg-path train_configs/gemkr_tiny_world.yaml \
        --detections dataset/world_small/annotations/detections_{split}.json \
        --instances dataset/world_small/annotations/instances_{split}.json \
        --image-root dataset/world_small --splits train test --out index/world_small/regions

Boxes come in COCO detection-results format ({image_id, bbox [x,y,w,h], score}); YOLO output
converted to that format works the same. Interrupted runs resume at the first missing shard.
"""
import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mmrag  # noqa: E402,F401
from mmrag.common.config import build_config  # noqa: E402
from mmrag.datasets.formats import read_coco_detections, read_coco_instances  # noqa: E402
from mmrag.datasets.region_store import RegionStoreWriter, encode_regions, top_regions  # noqa: E402
from mmrag.models.image_processing import ImageProcessor  # noqa: E402
from mmrag.models.vision_tower import build_vision_tower  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402


def region_items(detections_path: Path, instances_path: Path, image_root: Path, top_k: int) -> list:
    instances = read_coco_instances(instances_path)
    by_image = defaultdict(list)
    for det in read_coco_detections(detections_path):
        by_image[det["image_id"]].append(det)
    items = []
    for img in instances["images"]:
        dets = top_regions(by_image.get(img["id"], []), top_k)
        path = image_root / img["file_name"] if (image_root / img["file_name"]).is_file() else image_root / "images" / img["file_name"]
        items.append({"key": Path(img["file_name"]).stem, "path": str(path),
                      "boxes": [d["bbox"] for d in dets], "scores": [float(d.get("score", 1.0)) for d in dets]})
    return items


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg-path", required=True, help="experiment YAML whose model.vision_tower is used")
    p.add_argument("--options", nargs="*", default=[], help="config overrides a.b=c, e.g. model.vision_tower.path=...")
    p.add_argument("--detections", required=True, help="COCO detection results; may contain {split}")
    p.add_argument("--instances", required=True, help="COCO instances (image file names); may contain {split}")
    p.add_argument("--image-root", required=True)
    p.add_argument("--splits", nargs="+", default=["train", "test"])
    p.add_argument("--out", required=True)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="image decoding processes")
    args = p.parse_args(argv)
    cfg = build_config(args.cfg_path, args.options)
    tower = build_vision_tower(OmegaConf.to_container(cfg.model.vision_tower, resolve=True))
    if torch.cuda.is_available():
        tower = tower.cuda()
    processor = ImageProcessor(tower.image_size, tower.image_mean, tower.image_std, cfg.model.pad_to_square)
    writer = RegionStoreWriter(args.out, tower.hidden_size, args.top_k,
                               meta={"vision_tower": OmegaConf.to_container(cfg.model.vision_tower)})
    for split in args.splits:
        items = region_items(Path(args.detections.format(split=split)), Path(args.instances.format(split=split)),
                             Path(args.image_root), args.top_k)
        new = encode_regions(tower, processor, items, writer, args.batch_size, args.shard_size,
                             num_workers=args.workers)
        print(f"{split}: {new} images encoded ({len(items) - new} already in {args.out})")


if __name__ == "__main__":
    main()
