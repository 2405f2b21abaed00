"""Dataset builders, registered by name: each reads one on-disk format into a ConversationDataset.

`Builder.build(cfg, processor, split, name)`: `processor` is the run's MultimodalProcessor (its
image processor reads the images; its tokenizer, where a builder needs one, tokenises targets)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from mmrag.common.registry import DATASETS
from mmrag.datasets.multimodal_dataset import BUILDER_DEFAULTS, ConversationDataset, drop_missing_images
from mmrag.common.paths import require_path


class Builder:
    DEFAULTS: Dict[str, Any] = {}

    @classmethod
    def default_config(cls, user_cfg) -> Dict[str, Any]:
        return {**BUILDER_DEFAULTS, **cls.DEFAULTS}


def split_path(cfg, split: str, key: str = "data_path") -> Path:
    """`data_path` may hold `{split}`, e.g. dataset/world_small/llava/instruct_{split}.json."""
    return require_path(f"datasets.<name>.{key}", str(cfg[key]).format(split=split), "data file")


def llava_records(path: Path, image_root: Path) -> List[Dict[str, Any]]:
    """LLaVA conversation JSON -> records; `image` may be absent, one path or a list of paths."""
    from mmrag.datasets.formats import read_llava_conversations

    records = []
    for item in read_llava_conversations(path):
        images = item.get("image") or []
        images = [images] if isinstance(images, str) else list(images)
        records.append({"id": str(item["id"]), "images": [str(image_root / im) for im in images],
                        "conversations": item["conversations"]})
    return records


@DATASETS.register("llava_instruct")
class LlavaInstructBuilder(Builder):
    """LLaVA-format conversations (single- or multi-image), e.g. LLaVA-665K or the world's instruct files.

    `grounding_boxes` (a COCO instances JSON, may hold `{split}`): every image of the records gets
    per-cell name targets for the model's grounding loss (`model.grounding_loss_weight`; the cells and
    names: `processors.grounding`); an image the file does not hold is refused. Give it only to
    datasets whose images are training images (never to a file that also holds the val images)."""

    DEFAULTS = {"grounding_boxes": None, "grounding_tokens": "first", "grounding_min_cover": 0.25,
                "grounding_empty": None}   # grounding_tokens: first | all; grounding_empty: a word uncovered cells predict

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        path = split_path(cfg, split)
        root = require_path(f"datasets.{name}.image_root", cfg.image_root, "image folder")
        records = llava_records(path, root)
        if cfg.max_samples:
            records = records[: cfg.max_samples]
        records = drop_missing_images(records, cfg.missing_images, str(path))
        if cfg.get("grounding_boxes"):
            targets = GroundingTargets.from_config(cfg, processor, split, name)
            for rec in records:
                rec["cell_targets"] = [targets.for_image(p, rec["id"]) for p in rec["images"]]
        return ConversationDataset(records, processor.image_processor, name)


class GroundingTargets:
    """Per-cell name targets of the images of a COCO instances JSON (one tensor per file, built once)."""

    def __init__(self, instances: Dict[str, Any], source: str, tokenizer, grid: int, pad_to_square: bool,
                 mode: str = "first", min_cover: float = 0.25, empty: Optional[str] = None) -> None:
        from mmrag.processors.grounding import check_token_mode, name_token_ids

        check_token_mode(mode)
        self.source, self.grid, self.pad_to_square, self.min_cover = source, grid, pad_to_square, min_cover
        self.names = {c["id"]: name_token_ids(tokenizer, c["name"], mode) for c in instances["categories"]}
        self.empty = name_token_ids(tokenizer, empty, "first") if empty else None
        self.images = {Path(im["file_name"]).name: (im["width"], im["height"], []) for im in instances["images"]}
        by_id = {im["id"]: Path(im["file_name"]).name for im in instances["images"]}
        for ann in instances["annotations"]:
            self.images[by_id[ann["image_id"]]][2].append(ann)
        self._built: Dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg, processor, split: str, name: str) -> "GroundingTargets":
        from mmrag.common.errors import ConfigError
        from mmrag.datasets.formats import read_coco_instances

        path = split_path(cfg, split, "grounding_boxes")
        cells = processor.num_visual_tokens
        grid = int(round(cells ** 0.5))
        if grid * grid != cells:
            raise ConfigError(f"datasets.{name}.grounding_boxes: the model's {cells} visual tokens per image are not "
                              "a square grid of cells (a patch-grid tower and a projector that keeps or pools the grid)")
        return cls(read_coco_instances(path), str(path), processor.tokenizer, grid,
                   processor.image_processor.pad_to_square, cfg.grounding_tokens, float(cfg.grounding_min_cover),
                   cfg.get("grounding_empty"))

    def for_image(self, image_path: str, record_id: str = ""):
        """[cells, width] long tensor of the image's per-cell name ids (processors.grounding.cell_targets)."""
        from mmrag.common.errors import DataFormatError
        from mmrag.processors.grounding import cell_targets, covered_cells

        key = Path(image_path).name
        if key not in self._built:
            if key not in self.images:
                raise DataFormatError(f"{self.source}: no image {key} (record {record_id}); grounding_boxes must "
                                      "hold the boxes of every image of the dataset")
            width, height, anns = self.images[key]
            owner = covered_cells([a["bbox"] for a in anns], width, height, self.grid, self.pad_to_square,
                                  self.min_cover)
            self._built[key] = cell_targets(owner, [self.names[a["category_id"]] for a in anns],
                                            empty_ids=self.empty)
        return self._built[key]


def _text_record(rid: str, text: str) -> Dict[str, Any]:
    """A text-only record whose whole text is the answer: with an empty question, the loss falls on
    every token of the text (language-model pre-training through the conversation collation)."""
    return {"id": rid, "images": [], "conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": text}]}


@DATASETS.register("text_corpus")
class TextCorpusBuilder(Builder):
    """Plain text for language-model pre-training: a corpus CSV (`id,text`: the knowledge passages)
    or a COCO captions JSON (its captions as text); no images. The split's file is `data_path`."""

    DEFAULTS = {"format": "corpus_csv"}   # corpus_csv | coco_captions
    FORMATS = ("corpus_csv", "coco_captions")

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        from mmrag.common.errors import ConfigError
        from mmrag.datasets.formats import read_coco_captions, read_corpus_csv

        if cfg.format not in cls.FORMATS:
            raise ConfigError(f"datasets.{name}.format={cfg.format!r}: expected one of {', '.join(cls.FORMATS)}")
        path = split_path(cfg, split)
        if cfg.format == "corpus_csv":
            records = [_text_record(p.id, p.text) for p in read_corpus_csv(path)]
        else:
            records = [_text_record(f"caption_{a['id']}", a["caption"]) for a in read_coco_captions(path)["annotations"]]
        return ConversationDataset(records[: cfg.max_samples or None], processor.image_processor, name)


@DATASETS.register("coco_captions")
class CocoCaptionsBuilder(Builder):
    """Image-caption pairs from a COCO captions JSON, asked as `prompt` (the alignment stage's data:
    every caption of every image, images under `image_root`)."""

    DEFAULTS = {"prompt": "Describe the image briefly."}

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        from mmrag.datasets.formats import read_coco_captions

        path = split_path(cfg, split)
        root = require_path(f"datasets.{name}.image_root", cfg.image_root, "image folder")
        data = read_coco_captions(path)
        files = {im["id"]: im["file_name"] for im in data["images"]}
        records = [{"id": f"caption_{a['id']}", "images": [str(root / files[a["image_id"]])],
                    "conversations": [{"from": "human", "value": f"<image>\n{cfg.prompt}"},
                                      {"from": "gpt", "value": a["caption"]}]} for a in data["annotations"]]
        records = drop_missing_images(records[: cfg.max_samples or None], cfg.missing_images, str(path))
        return ConversationDataset(records, processor.image_processor, name)


@DATASETS.register("region_descriptions")
class RegionDescriptionsBuilder(Builder):
    """One record per image of the split: `prompt` -> the image's region phrases, joined by '; ' in
    file order. `data_path`: Visual-Genome-style region descriptions (all splits in one file);
    `split_images`: a COCO JSON of the split whose `images` say which images belong to it."""

    DEFAULTS = {"prompt": "Describe the objects in the image.", "split_images": None}

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        from mmrag.datasets.formats import read_coco_instances, read_region_descriptions, region_image_id

        path = split_path(cfg, split)
        members = split_path(cfg, split, "split_images")
        root = require_path(f"datasets.{name}.image_root", cfg.image_root, "image folder")
        stems = {Path(im["file_name"]).stem: im["file_name"] for im in read_coco_instances(members)["images"]}
        records = []
        for item in read_region_descriptions(path):
            key = str(region_image_id(item))
            if key in stems and item["regions"]:
                answer = "; ".join(r["phrase"] for r in item["regions"])
                records.append({"id": f"{key}_regions", "images": [str(root / stems[key])],
                                "conversations": [{"from": "human", "value": f"<image>\n{cfg.prompt}"},
                                                  {"from": "gpt", "value": answer}]})
        records = drop_missing_images(records[: cfg.max_samples or None], cfg.missing_images, str(path))
        return ConversationDataset(records, processor.image_processor, name)
