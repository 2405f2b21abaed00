"""Torch datasets over conversation records with images, and the missing-image policy.

A record is {"id", "images": [paths], "conversations": [{"from","value"}], optional "target_ids",
optional "region_key", optional "cell_targets" (per image, the grounding loss's per-cell name ids)}. Images are checked when the dataset is built: a missing file is either
skipped (counted, reported with its id and path) or fails at once, per `missing_images`. An image
that exists but cannot be decoded is handled the same way when it is read, never as a bare crash.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.data import Dataset

from mmrag.common.errors import ImageReadError, UserError

log = logging.getLogger(__name__)
BUILDER_DEFAULTS: Dict[str, Any] = {
    "builder": None,
    "data_path": None,
    "image_root": None,
    "sample_ratio": 1.0,
    "missing_images": "skip",   # skip | fail
    "max_samples": None,
}


class MissingImageError(UserError, FileNotFoundError):
    pass


def drop_missing_images(records: List[Dict[str, Any]], policy: str, source: str) -> List[Dict[str, Any]]:
    """Keep records whose images all exist; report the others (policy 'skip') or raise ('fail')."""
    if policy not in ("skip", "fail"):
        raise ValueError(f"missing_images must be 'skip' or 'fail', got {policy!r}")
    kept, missing = [], []
    for rec in records:
        absent = [p for p in rec["images"] if not Path(p).is_file()]
        if absent and policy == "fail":
            raise MissingImageError(f"{source}: record {rec['id']} references missing image {absent[0]}")
        (missing if absent else kept).append((rec, absent) if absent else rec)
    if missing:
        shown = "; ".join(f"{r['id']}: {a[0]}" for r, a in missing[:3])
        log.warning("%s: skipped %d record(s) with missing images (%s%s)", source, len(missing), shown,
                    " ..." if len(missing) > 3 else "")
    return kept


class ConversationDataset(Dataset):
    def __init__(self, records: List[Dict[str, Any]], image_processor: Callable, name: str,
                 region_store: Optional[Any] = None) -> None:
        self.records, self.image_processor, self.name = records, image_processor, name
        self.region_store = region_store
        self.unreadable = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        rec = self.records[i]
        pixels = [self.image_processor(p) for p in rec["images"]]  # ImageReadError names the file
        sample = {
            "id": rec["id"],
            "conversations": rec["conversations"],
            "pixel_values": torch.stack(pixels) if pixels else torch.zeros(0, 3, 1, 1),
        }
        if rec.get("target_ids") is not None:
            sample["target_ids"] = rec["target_ids"]
        if rec.get("cell_targets") is not None:
            sample["cell_targets"] = rec["cell_targets"]
        if self.region_store is not None:
            sample["regions"] = torch.stack([self.region_store.get(Path(p).stem) for p in rec["images"]])
        return sample


def collate_indices(processor, dataset: ConversationDataset, indices: Sequence[int], policy: str = "skip",
                    generation: bool = False) -> Dict[str, torch.Tensor]:
    """Load samples and collate them with `processor` (a MultimodalProcessor); an unreadable image is
    skipped (and counted) or fails."""
    samples = []
    for i in indices:
        try:
            samples.append(dataset[i])
        except ImageReadError as err:
            if policy == "fail":
                raise
            dataset.unreadable += 1
            log.warning("%s: skipping record %s: %s", dataset.name, dataset.records[i]["id"], err)
    if not samples:
        raise ImageReadError(f"{dataset.name}: every image of a batch was unreadable (indices {list(indices)[:5]})")
    return processor.collate(samples, generation=generation)
