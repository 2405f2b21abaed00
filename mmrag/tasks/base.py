"""A task owns what differs between experiments: which datasets it trains on, how a batch is
collated, and how the trained model is evaluated. The runner owns the loop."""
from __future__ import annotations

from typing import Any, Dict, Tuple

from omegaconf import OmegaConf

from mmrag.common.registry import DATASETS, MODELS
from mmrag.datasets.multimodal_dataset import collate_indices


class Task:
    DEFAULTS: Dict[str, Any] = {"run": {}, "evaluation": {}}

    @classmethod
    def default_config(cls, user_cfg) -> Dict[str, Any]:
        return OmegaConf.create(cls.DEFAULTS)

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def build_model(self, cfg):
        return MODELS.get(cfg.model.arch)(cfg.model)

    def build_train_datasets(self, cfg, model) -> Tuple[Dict[str, Any], Dict[str, float]]:
        datasets, ratios = {}, {}
        for name, ds_cfg in cfg.datasets.items():
            builder = DATASETS.get(ds_cfg.builder or name)
            datasets[name] = builder.build(ds_cfg, model, split="train", name=name)
            ratios[name] = float(ds_cfg.sample_ratio)
        return datasets, ratios

    def collate_fn(self, model):
        policies = {name: ds.missing_images for name, ds in self.cfg.datasets.items()}

        def collate(dataset, indices):
            return collate_indices(model, dataset, indices, policies.get(dataset.name, "skip"))

        return collate

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} has no evaluation")
