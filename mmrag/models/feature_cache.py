"""A cache of a frozen vision tower's output, keyed by the exact input pixels.

Why: a frozen pretrained CNN costs ~35 ms an image on 2 CPU cores, more than the tiny LLM's whole
training step, and staged training reads the same few thousand images for many epochs. The tower
is a fixed function of its weights, so its output for the same pixel tensor is looked up instead of
recomputed: in memory within a process, and on disk (`model.vision_tower.feature_cache: <folder>`)
across the stages of a pipeline, which run as separate processes.

Keys: the sha1 of one image's float32 pixel bytes (`pixel_key`), under a folder named by the sha1
of the tower's weights and settings, so features of another tower, another map or other weights are never mixed
up. Files are written atomically (tmp + os.replace); concurrent writers of the same key write the
same bytes. The processor computes the same keys in the data loader's workers (a batch's
`image_keys`), so a batch whose images are all cached is looked up (`lookup`) without hashing, or
copying to the GPU, its pixels in the training process.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from mmrag.common.errors import ConfigError
from mmrag.processors.image_processing import pixel_key  # the processor computes the same keys


def tower_fingerprint(module: torch.nn.Module, settings: str) -> str:
    """sha1 of the settings text and of every weight and buffer (names, shapes, values)."""
    digest = hashlib.sha1(settings.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    def __init__(self, folder: Optional[Path], fingerprint: str) -> None:
        self.folder = Path(folder) / fingerprint[:16] if folder is not None else None
        self.memory: Dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    @classmethod
    def from_config(cls, cfg, tower: torch.nn.Module) -> Optional["FeatureCache"]:
        """The cache `model.vision_tower.feature_cache` asks for (None: no cache)."""
        folder = cfg.get("feature_cache")
        if not folder:
            return None
        if not cfg.get("freeze", True):
            raise ConfigError("model.vision_tower.feature_cache needs a frozen tower (freeze: true): a trained "
                              "tower's features change every step")
        settings = f"{cfg.get('model_name')}|{cfg.get('feature_map')}|{cfg.get('select_feature')}|{cfg.get('select_layer')}"
        return cls(Path(folder), tower_fingerprint(tower, settings))

    def _load(self, key: str) -> Optional[torch.Tensor]:
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None:
            path = self.folder / f"{key}.pt"
            if path.is_file():
                self.memory[key] = torch.load(path, weights_only=True)
                return self.memory[key]
        return None

    def _store(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu").contiguous().clone()
        self.memory[key] = value
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f"{key}.{os.getpid()}.tmp"
            torch.save(value, tmp)
            os.replace(tmp, self.folder / f"{key}.pt")

    def lookup(self, keys: List[str]) -> Optional[torch.Tensor]:
        """The cached features of every key, stacked [n, tokens, width] on the CPU; None unless all are cached."""
        found = []
        for key in keys:
            value = self._load(key)
            if value is None:
                return None
            found.append(value)
        self.hits += len(found)
        return torch.stack(found)

    @torch.no_grad()
    def features(self, pixel_values: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`compute(pixel_values)` for the batch, computing only the images not seen before."""
        keys = [pixel_key(p) for p in pixel_values]
        found: List[Optional[torch.Tensor]] = [self._load(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = compute(pixel_values[missing])
            for i, value in zip(missing, fresh):
                self._store(keys[i], value)
                found[i] = self.memory[keys[i]]
        return torch.stack(found).to(pixel_values.device)
