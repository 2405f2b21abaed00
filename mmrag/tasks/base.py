"""A task owns what differs between experiments: which datasets it trains on, how a batch is
collated, and how the trained model is evaluated. The runner owns the loop.

Build order: `build_model(cfg)` (nn.Module: towers, projector, context module, LLM), then
`build_processor(cfg, model)` (tokenizer, template, image processor, collation: from the same
`cfg.model` plus what the model reports), then `build_train_datasets(cfg, processor)` and
`collate_fn(processor)`.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from omegaconf import OmegaConf

from mmrag.common.registry import DATASETS, MODELS
from mmrag.datasets.multimodal_dataset import collate_indices
from mmrag.processors import MultimodalProcessor, build_processor


class Task:
    DEFAULTS: Dict[str, Any] = {"run": {}, "evaluation": {}}

    @classmethod
    def default_config(cls, user_cfg) -> Dict[str, Any]:
        return OmegaConf.create(cls.DEFAULTS)

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def build_model(self, cfg):
        return MODELS.get(cfg.model.arch)(cfg.model)

    def build_processor(self, cfg, model) -> MultimodalProcessor:
        """The processor for `model`: from the `model:` section the model was built from (`model.cfg`,
        i.e. `cfg.model`) and the model's `visual_input_spec()`."""
        return build_processor(model.cfg, model)

    def build_train_datasets(self, cfg, processor) -> Tuple[Dict[str, Any], Dict[str, float]]:
        datasets, ratios = {}, {}
        for name, ds_cfg in cfg.datasets.items():
            builder = DATASETS.get(ds_cfg.builder or name)
            datasets[name] = builder.build(ds_cfg, processor, split="train", name=name)
            ratios[name] = float(ds_cfg.sample_ratio)
        return datasets, ratios

    def collate_fn(self, processor):
        policies = {name: ds.missing_images for name, ds in self.cfg.datasets.items()}

        def collate(dataset, indices):
            return collate_indices(processor, dataset, indices, policies.get(dataset.name, "skip"))

        return collate

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        """Tasks that generate build their processor with `self.build_processor(cfg, model)`."""
        raise NotImplementedError(f"{type(self).__name__} has no evaluation")
