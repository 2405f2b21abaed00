"""Image-text pairs for contrastive (CLIP / SigLIP) pre-training, from a generated world or any
image-caption collection, and their collation.

A pair is a record {"image": absolute path, "box": [x, y, w, h] or None, "text", "key", "labels"}:
`box` crops a region (squared, see `square_box`), `key` names the pixels (the same image, or the same
crop, gives the same key: two pairs with one key, or one text, are both positives of each other), and
`labels` lists the class indices present in a whole image (for the presence loss; None for crops).

Sources of a world (`sources:`):
- `captions`  each image with each of its captions (annotations/captions_<split>.json);
- `regions`   region descriptions (regions/region_descriptions.json): the region's crop with its
              phrase (`region_view: crop`), or the whole image with it (`region_view: image`);
- `names`     every ground-truth box (annotations/instances_<split>.json): its crop with
              `name_template` filled with the category name (the entity's made-up name, or "tree").
Or a plain collection: `captions_file` (a JSON list of {"image", "caption"}, e.g. image_captions.json).

Splits: `train` is the world's train images minus a validation slice (`val_fraction` of the train
images, chosen by a hash of the file name: the same images on every run), `val` is that slice, `test`
the world's test images. Hyperparameters are chosen on `val`; `test` is only evaluated.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset

from mmrag.common.errors import ConfigError
from mmrag.common.paths import require_path
from mmrag.common.registry import DATASETS
from mmrag.datasets.builders import Builder
from mmrag.datasets.formats import (read_coco_captions, read_coco_instances, read_image_captions,
                                    read_region_descriptions, region_image_id)
from mmrag.processors.image_processing import open_rgb

SOURCES = ("captions", "regions", "names")
SPLITS = ("train", "val", "test")
REGION_VIEWS = ("crop", "image")


# ----------------------------------------------------------------------------- helpers
def in_val_slice(image_name: str, fraction: float) -> bool:
    """The validation slice of the train images, by a hash of the file stem (stable across runs)."""
    stem = Path(image_name).stem
    return int(hashlib.md5(stem.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def square_box(box: Sequence[float], width: int, height: int, margin: float) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square around a COCO [x, y, w, h] box: side max(w, h) x (1 + margin),
    same centre, shifted (not shrunk) to stay inside the image where it fits. A square crop keeps the
    object whole under the resize + centre-crop of CLIP's preprocessing, which cuts a long side."""
    x, y, w, h = (float(v) for v in box)
    side = min(max(w, h) * (1.0 + margin), float(min(width, height)))
    cx, cy = x + w / 2, y + h / 2
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    side_px = max(1, int(round(side)))
    left_px, top_px = int(round(left)), int(round(top))
    return left_px, top_px, left_px + side_px, top_px + side_px


def crop_pixels(image: Image.Image, box: Optional[Sequence[float]], margin: float) -> Image.Image:
    return image if box is None else image.crop(square_box(box, image.width, image.height, margin))


# ----------------------------------------------------------------------------- world readers
class WorldSplit:
    """The images of one split of a world folder, with their boxes, captions and region phrases."""

    def __init__(self, world: str | Path, split: str, val_fraction: float) -> None:
        if split not in SPLITS:
            raise ConfigError(f"image-text split {split!r} is not one of {', '.join(SPLITS)}")
        self.root = Path(world)
        file_split = "test" if split == "test" else "train"
        instances = read_coco_instances(self.root / "annotations" / f"instances_{file_split}.json")
        keep = (lambda n: True) if split == "test" else (lambda n: in_val_slice(n, val_fraction) == (split == "val"))
        self.images = {im["id"]: im for im in instances["images"] if keep(im["file_name"])}
        categories = sorted(instances["categories"], key=lambda c: c["id"])
        self.class_names = [c["name"] for c in categories]
        index = {c["id"]: i for i, c in enumerate(categories)}
        self.boxes: Dict[int, List[Tuple[List[float], int]]] = {i: [] for i in self.images}
        for ann in instances["annotations"]:
            if ann["image_id"] in self.images:
                self.boxes[ann["image_id"]].append((list(ann["bbox"]), index[ann["category_id"]]))
        self.file_split = file_split

    def path(self, image_id: int) -> str:
        return str((self.root / "images" / self.images[image_id]["file_name"]).resolve())

    def labels(self, image_id: int) -> Tuple[int, ...]:
        return tuple(sorted({c for _, c in self.boxes[image_id]}))

    def captions(self) -> List[Tuple[int, str]]:
        data = read_coco_captions(self.root / "annotations" / f"captions_{self.file_split}.json")
        return [(a["image_id"], a["caption"]) for a in data["annotations"] if a["image_id"] in self.images]

    def regions(self) -> List[Tuple[int, List[float], str]]:
        by_stem = {Path(im["file_name"]).stem: i for i, im in self.images.items()}
        out = []
        for item in read_region_descriptions(self.root / "regions" / "region_descriptions.json"):
            image_id = by_stem.get(str(region_image_id(item)))
            if image_id is not None:
                out += [(image_id, [r["x"], r["y"], r["width"], r["height"]], r["phrase"]) for r in item["regions"]]
        return out


def world_pairs(world: WorldSplit, sources: Sequence[str], name_template: str, region_view: str) -> List[Dict[str, Any]]:
    """The image-text pair records of `sources` over one split of a world."""
    pairs: List[Dict[str, Any]] = []
    if "captions" in sources:
        pairs += [_pair(world.path(i), None, text, world.labels(i)) for i, text in world.captions()]
    if "regions" in sources:
        for i, box, phrase in world.regions():
            crop = region_view == "crop"
            pairs.append(_pair(world.path(i), box if crop else None, phrase, None if crop else world.labels(i)))
    if "names" in sources:
        for i, boxes in world.boxes.items():
            pairs += [_pair(world.path(i), box, name_template.format(name=world.class_names[c]), None)
                      for box, c in boxes]
    return pairs


def _pair(path: str, box: Optional[List[float]], text: str, labels: Optional[Tuple[int, ...]]) -> Dict[str, Any]:
    key = path if box is None else f"{path}#{','.join(f'{v:g}' for v in box)}"
    return {"image": path, "box": box, "text": text, "key": key, "labels": labels}


def collection_pairs(captions_file: str | Path, image_root: str | Path, split: str, val_fraction: float) -> List[Dict[str, Any]]:
    """Pairs of a plain {"image", "caption"} collection: `train` = outside the hashed validation slice,
    `val` (and `test`, which such a collection lacks) = inside it."""
    root = Path(image_root)
    held = split != "train"
    return [_pair(str((root / it["image"]).resolve()), None, it["caption"], None)
            for it in read_image_captions(captions_file) if in_val_slice(it["image"], val_fraction) == held]


# ----------------------------------------------------------------------------- dataset + collation
class ImageTextDataset(Dataset):
    """Pair records -> {"pixels", "text", "key", "labels"}; decoded images are cached (a world's images
    are small: the small world's 2,400 train images take ~66 MB)."""

    def __init__(self, pairs: List[Dict[str, Any]], transform, name: str, num_classes: int = 0,
                 crop_margin: float = 0.15, cache_images: bool = True) -> None:
        self.records, self.transform, self.name = pairs, transform, name
        self.num_classes, self.crop_margin, self.cache_images = num_classes, crop_margin, cache_images
        self.unreadable = 0
        self._cache: Dict[str, Image.Image] = {}
        self.pos_weight, self.neg_weight = presence_weights([p["labels"] for p in pairs], num_classes)

    def __len__(self) -> int:
        return len(self.records)

    def image(self, path: str) -> Image.Image:
        if not self.cache_images:
            return open_rgb(path)
        if path not in self._cache:
            self._cache[path] = open_rgb(path)
        return self._cache[path]

    def __getitem__(self, i: int) -> Dict[str, Any]:
        rec = self.records[i]
        pixels = self.transform(crop_pixels(self.image(rec["image"]), rec["box"], self.crop_margin))
        return {"pixels": pixels, "text": rec["text"], "key": rec["key"], "labels": rec["labels"]}


def presence_weights(labels: Sequence[Optional[Sequence[int]]], num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-class weights of the balanced presence loss: over the labelled samples, class c is present in
    a share p_c; positives weigh 0.5 / p_c and negatives 0.5 / (1 - p_c), so the positives and the
    negatives of every class carry equal total weight (and one sample's expected weight per class is 1).
    A class never present (or always present) gets weight 0 on the side it lacks."""
    labelled = [set(ls) for ls in labels if ls is not None] if num_classes else []
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for ls in labelled:
        for c in ls:
            counts[c] += 1
    n = max(1, len(labelled))
    p = counts / n
    pos = torch.where(p > 0, 0.5 / p.clamp(min=1e-12), torch.zeros_like(p))
    neg = torch.where(p < 1, 0.5 / (1 - p).clamp(min=1e-12), torch.zeros_like(p))
    return pos.float(), neg.float()


class ImageTextCollator:
    """Pixels, CLIP-BPE token ids, the positives matrix and the presence targets of a batch of pairs."""

    def __init__(self, image_size: int, context_length: int) -> None:
        import open_clip

        self.transform = open_clip.image_transform(image_size, is_train=False)  # what ClipEmbedder uses
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)

    def collate(self, samples: List[Dict[str, Any]], dataset: ImageTextDataset) -> Dict[str, Any]:
        keys, texts = [s["key"] for s in samples], [s["text"] for s in samples]
        positives = torch.tensor([[a == b or keys[i] == keys[j] for j, b in enumerate(texts)]
                                  for i, a in enumerate(texts)])
        batch = {"pixels": torch.stack([s["pixels"] for s in samples]), "text_ids": self.tokenizer(texts),
                 "positives": positives}
        if dataset.num_classes:
            batch.update(presence_targets([s["labels"] for s in samples], dataset.pos_weight, dataset.neg_weight))
        return batch


def presence_targets(labels: Sequence[Optional[Sequence[int]]], pos_weight: torch.Tensor,
                     neg_weight: torch.Tensor) -> Dict[str, torch.Tensor]:
    """0/1 targets and per-entry weights (B, C); rows without labels (crops) weigh 0."""
    targets = torch.zeros(len(labels), len(pos_weight))
    weights = torch.zeros_like(targets)
    for row, ls in enumerate(labels):
        if ls is None:
            continue
        targets[row, list(ls)] = 1.0
        weights[row] = torch.where(targets[row] > 0, pos_weight, neg_weight)
    return {"presence_targets": targets, "presence_weights": weights}


# ----------------------------------------------------------------------------- builder
@DATASETS.register("image_text")
class ImageTextBuilder(Builder):
    """Image-text pairs of a world (`world`) or of a plain collection (`captions_file` + `image_root`)."""

    DEFAULTS: Dict[str, Any] = {
        "world": None,                        # a world folder (mmrag-make-world)
        "captions_file": None,                # or a JSON list of {"image", "caption"} (image paths under image_root)
        "sources": list(SOURCES),             # world sources: captions | regions | names
        "name_template": "a picture of a {name}.",
        "region_view": "crop",                # crop | image: a region phrase with its crop or the whole image
        "crop_margin": 0.15,                  # a box's square crop is this much larger than its long side
        "val_fraction": 0.1,                  # train images (by file-name hash) kept out of training
        "presence_labels": False,             # whole-image pairs carry class labels (presence loss)
        "cache_images": True,
    }

    @classmethod
    def pairs(cls, cfg, split: str) -> Tuple[List[Dict[str, Any]], int]:
        """(pair records, number of classes: 0 without presence labels)."""
        if bool(cfg.world) == bool(cfg.captions_file):
            raise ConfigError("datasets.<name>: set exactly one of 'world' (a world folder) and 'captions_file'")
        if cfg.world:
            unknown = [s for s in cfg.sources if s not in SOURCES]
            if unknown or not cfg.sources:
                raise ConfigError(f"datasets.<name>.sources={list(cfg.sources)}: expected some of {', '.join(SOURCES)}")
            if cfg.region_view not in REGION_VIEWS:
                raise ConfigError(f"datasets.<name>.region_view={cfg.region_view!r}: expected crop or image")
            world = WorldSplit(require_path("datasets.<name>.world", cfg.world, "world folder"), split, cfg.val_fraction)
            pairs = world_pairs(world, list(cfg.sources), cfg.name_template, cfg.region_view)
            return pairs, len(world.class_names) if cfg.presence_labels else 0
        captions = require_path("datasets.<name>.captions_file", cfg.captions_file, "image-caption JSON")
        root = cfg.image_root or str(Path(captions).parent)
        return collection_pairs(captions, root, split, cfg.val_fraction), 0

    @classmethod
    def build(cls, cfg, processor: ImageTextCollator, split: str, name: str) -> ImageTextDataset:
        pairs, num_classes = cls.pairs(cfg, split)
        if cfg.max_samples:
            pairs = pairs[: cfg.max_samples]
        return ImageTextDataset(pairs, processor.transform, name, num_classes, cfg.crop_margin, cfg.cache_images)

    @classmethod
    def num_classes(cls, cfg) -> int:
        """Classes of the presence head (0: no presence labels), read without building the dataset."""
        if not (cfg.world and cfg.presence_labels):
            return 0
        data = read_coco_instances(Path(cfg.world) / "annotations" / "instances_train.json")
        return len(data["categories"])
