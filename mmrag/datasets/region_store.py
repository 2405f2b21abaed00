"""Per-image region features in sharded safetensors files with a JSON index.

Layout of a store folder:
    index.json            {"dim", "top_k", "shards": {shard name: [image ids]}, "tower": {...}}
    shard_00000.safetensors   one [top_k, dim] float tensor per image id (zero rows pad), and
                              "<id>::scores" [top_k] detector scores (0 for padding)
Each shard is written to a temporary name and renamed, then recorded in index.json (also
atomically), so an interrupted encoding run resumes at the first missing shard.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import torch
from safetensors.torch import load_file, save_file
from mmrag.common.errors import UserError

INDEX = "index.json"


class RegionStoreError(UserError, LookupError):
    pass


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)


class RegionFeatureStore:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index_file = self.folder / INDEX
        if not index_file.is_file():
            raise FileNotFoundError(f"region feature store {self.folder} has no {INDEX}; run data_process/encode_region.py")
        self.index = json.loads(index_file.read_text())
        self._where = {img: shard for shard, ids in self.index["shards"].items() for img in ids}
        self._cache: Dict[str, Dict[str, torch.Tensor]] = {}
        self.dim, self.top_k = int(self.index["dim"]), int(self.index["top_k"])

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._where

    def __len__(self) -> int:
        return len(self._where)

    def get(self, image_id: str) -> torch.Tensor:
        """[top_k, dim] region features of one image (zero rows where it had fewer regions)."""
        shard = self._where.get(image_id)
        if shard is None:
            raise RegionStoreError(f"region store {self.folder}: no features for image '{image_id}'")
        if shard not in self._cache:
            if len(self._cache) > 8:  # a few shards in memory at once
                self._cache.pop(next(iter(self._cache)))
            self._cache[shard] = load_file(str(self.folder / shard))
        return self._cache[shard][image_id]


class RegionStoreWriter:
    """Appends shards; `done` lists image ids already stored so a rerun skips them."""

    def __init__(self, folder: str | Path, dim: int, top_k: int, meta: Optional[dict] = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        index_file = self.folder / INDEX
        if index_file.is_file():
            self.index = json.loads(index_file.read_text())
            if (self.index["dim"], self.index["top_k"]) != (dim, top_k):
                raise ValueError(f"{index_file}: existing store has dim/top_k {self.index['dim']}/{self.index['top_k']}, "
                                 f"this run makes {dim}/{top_k}; use a new folder")
        else:
            self.index = {"dim": dim, "top_k": top_k, "shards": {}, "meta": meta or {}}

    @property
    def done(self) -> set:
        return {img for ids in self.index["shards"].values() for img in ids}

    def write_shard(self, features: Dict[str, torch.Tensor], scores: Dict[str, torch.Tensor]) -> str:
        name = f"shard_{len(self.index['shards']):05d}.safetensors"
        tensors = {k: v.contiguous() for k, v in features.items()}
        tensors.update({f"{k}::scores": v.contiguous() for k, v in scores.items()})
        tmp = self.folder / (name + ".tmp")
        save_file(tensors, str(tmp))
        os.replace(tmp, self.folder / name)
        self.index["shards"][name] = sorted(features)
        _atomic_json(self.folder / INDEX, self.index)
        return name


def top_regions(detections: Iterable[dict], top_k: int) -> List[dict]:
    """The `top_k` highest-scoring detections of one image (ties by order)."""
    return sorted(detections, key=lambda d: -float(d.get("score", 1.0)))[:top_k]


def crop(image, box):
    """Crop a COCO [x, y, w, h] box (clamped to the image, at least 1 pixel)."""
    x, y, w, h = (float(v) for v in box)
    left, top = max(0, int(x)), max(0, int(y))
    right, bottom = min(image.width, max(left + 1, int(round(x + w)))), min(image.height, max(top + 1, int(round(y + h))))
    return image.crop((left, top, right, bottom))


class _Crops(torch.utils.data.Dataset):
    """Item i = the preprocessed crops of image i (decoded in DataLoader workers)."""

    def __init__(self, items: List[dict], processor, top_k: int) -> None:
        self.items, self.processor, self.top_k = items, processor, top_k

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        from mmrag.processors import open_rgb

        image = open_rgb(self.items[i]["path"])
        crops = [self.processor(crop(image, box)) for box in self.items[i]["boxes"][: self.top_k]]
        return torch.stack(crops) if crops else torch.zeros(0, 3, 1, 1)


def _pad(rows: torch.Tensor, scores, top_k: int, dim: int):
    padded, sc = torch.zeros(top_k, dim), torch.zeros(top_k)
    padded[: len(rows)] = rows
    sc[: len(rows)] = torch.tensor(scores[: len(rows)], dtype=torch.float32)
    return padded, sc


@torch.no_grad()
def encode_regions(tower, processor, items: List[dict], writer: RegionStoreWriter, batch_size: int = 64,
                   shard_size: int = 512, progress: bool = True, num_workers: int = 0) -> int:
    """Encode every item {"key", "path", "boxes", "scores"} not yet in the store; returns how many were new.

    A region's feature is the CLS token of the tower's last block (before any final norm), as GeMKR uses.
    """
    from tqdm import tqdm

    top_k, dim = writer.index["top_k"], writer.index["dim"]
    done = writer.done
    todo = [it for it in items if it["key"] not in done]
    device = next(tower.parameters()).device
    for start in tqdm(range(0, len(todo), shard_size), desc="encode regions", disable=not progress):
        chunk = todo[start:start + shard_size]
        loader = torch.utils.data.DataLoader(_Crops(chunk, processor, top_k), batch_size=None,
                                             num_workers=num_workers)
        per_image = list(loader)
        crops = torch.cat([c for c in per_image if len(c)]) if any(len(c) for c in per_image) else None
        cls = torch.zeros(0, dim) if crops is None else torch.cat([
            tower.hidden_states(crops[b:b + batch_size].to(device))[-1][:, 0].float().cpu()
            for b in range(0, len(crops), batch_size)])
        feats, scores, at = {}, {}, 0
        for it, c in zip(chunk, per_image):
            feats[it["key"]], scores[it["key"]] = _pad(cls[at:at + len(c)], it["scores"], top_k, dim)
            at += len(c)
        writer.write_shard(feats, scores)
    return len(todo)
