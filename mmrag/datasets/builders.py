"""Dataset builders, registered by name: each reads one on-disk format into a ConversationDataset.

`Builder.build(cfg, processor, split, name)`: `processor` is the run's MultimodalProcessor (its
image processor reads the images; its tokenizer, where a builder needs one, tokenises targets)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

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
    """LLaVA-format conversations (single- or multi-image), e.g. LLaVA-665K or the world's instruct files."""

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        path = split_path(cfg, split)
        root = require_path(f"datasets.{name}.image_root", cfg.image_root, "image folder")
        records = llava_records(path, root)
        if cfg.max_samples:
            records = records[: cfg.max_samples]
        records = drop_missing_images(records, cfg.missing_images, str(path))
        return ConversationDataset(records, processor.image_processor, name)
