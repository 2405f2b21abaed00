"""Prepare what the embedded default experiment reads, skipping every step whose output exists:
the synthetic world, the tiny frozen vision tower, the corpus index and the region features."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from mmrag.common.assets import REPO_ROOT, llama_tokenizer_dir

log = logging.getLogger(__name__)
WORLD = "world_small"


def _run(args) -> None:
    log.info("setup: %s", " ".join(str(a) for a in args))
    subprocess.run([sys.executable, *map(str, args)], check=True, cwd=REPO_ROOT)


def ensure_default_inputs(world: str = WORLD, preset: str = "small", tower: str = "tiny",
                          cfg_path: str = "train_configs/gemkr_tiny_world.yaml", workers: int = 1) -> None:
    root = REPO_ROOT
    world_dir = root / "dataset" / world
    if not (world_dir / "world.json").is_file():
        _run(["data_process/make_world.py", "--preset", preset, "--seed", "0", "--out", world_dir,
              "--workers", workers])
    tower_dir = root / "index" / f"{tower}_clip_vision"
    if not (tower_dir / "config.json").is_file():
        _run(["data_process/make_tiny_backbones.py", "--out", tower_dir, "--size", tower])
    corpus_index = root / "index" / world / "corpus"
    if not (corpus_index / "header.json").is_file() and not (corpus_index / "shards.json").is_file():
        _run(["data_process/build_index.py", "--corpus", world_dir / "corpus.csv", "--tokenizer",
              llama_tokenizer_dir(), "--out", corpus_index])
    regions = root / "index" / world / "regions"
    if not (regions / "index.json").is_file() or not _regions_complete(world_dir, regions):  # resumable
        _run(["data_process/encode_region.py", "--cfg-path", cfg_path,
              "--detections", world_dir / "annotations" / "detections_{split}.json",
              "--instances", world_dir / "annotations" / "instances_{split}.json",
              "--image-root", world_dir, "--out", regions])


def _regions_complete(world_dir: Path, regions: Path) -> bool:
    import json

    index = json.loads((regions / "index.json").read_text())
    stored = sum(len(v) for v in index["shards"].values())
    images = len(list((world_dir / "images").glob("*.jpg")))
    return stored >= images
