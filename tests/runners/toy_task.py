"""A small task over generated images for runner tests; also a torchrun entry point, from the repository root:
    torchrun --nproc_per_node 2 -m tests.runners.toy_task OUT_DIR MAX_STEPS [KEY=VALUE ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401
from mmrag.common.registry import MODELS
from mmrag.datasets.multimodal_dataset import ConversationDataset, collate_indices
from mmrag.runners.runner import Runner
from mmrag.tasks.base import Task

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def make_records(folder: Path, n: int = 24):
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        name = list(COLOURS)[i % 3]
        path = folder / f"img{i}.png"
        if not path.exists():
            noise = np.random.default_rng(i).integers(0, 40, (32, 32, 3))
            Image.fromarray((np.array(COLOURS[name]) + noise).clip(0, 255).astype(np.uint8)).save(path)
        records.append({"id": f"r{i}", "images": [str(path)],
                        "conversations": [{"from": "human", "value": "<image>\nWhich colour is this?"},
                                          {"from": "gpt", "value": f"It is {name}." + " Quite so." * (i % 2)}]})
    return records


class ToyTask(Task):
    def __init__(self, cfg, records):
        super().__init__(cfg)
        self.records = records

    def build_model(self, cfg):
        return MODELS.get(cfg.model.arch)(cfg.model)

    def build_train_datasets(self, cfg, processor):
        return {"toy": ConversationDataset(self.records, processor.image_processor, "toy")}, {"toy": 1.0}

    def collate_fn(self, processor):
        return lambda ds, idx: collate_indices(processor, ds, idx)

    def evaluate(self, model, cfg, out_dir):
        return {}


def toy_config(model_cfg: dict, out_dir: Path, **run) -> OmegaConf:
    model = OmegaConf.merge(MODELS.get("mm_llm").default_config(model_cfg), model_cfg)
    run_cfg = {**Runner.default_config(), "output_dir": str(out_dir), "batch_size": 4, "init_lr": 1e-2,
               "warmup_steps": 2, "progress": False, "log_every": 1, "evaluate": False, "task": "toy", **run}
    return OmegaConf.create({"model": model, "datasets": {}, "run": run_cfg, "evaluation": {}})


def train(model_cfg: dict, out_dir: Path, images: Path, **run):
    cfg = toy_config(model_cfg, out_dir, **run)
    return Runner(cfg, ToyTask(cfg, make_records(images))).train()


def main(argv) -> None:
    """torchrun entry: OUT_DIR MAX_STEPS [KEY=VALUE run options]; every rank records where it ran
    (ranks/<rank>.json: rank and world size), rank 0 the losses of its records (history.json)."""
    from omegaconf import OmegaConf as OC

    from tests.conftest import TINY_LLM, TINY_TOWER

    out, steps = Path(argv[0]), int(argv[1])
    extra = {k: OC.to_object(OC.from_dotlist([f"v={v}"]))["v"] for k, v in (kv.split("=", 1) for kv in argv[2:])}
    cfg = {"arch": "mm_llm", "vision_tower": {"type": "hf_clip", "config": TINY_TOWER, "select_layer": -1},
           "llm": {"config": TINY_LLM}, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}}
    result = train(cfg, out, out / "images", max_steps=steps, device="cpu", **extra)
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    (out / "ranks" / f"{result['rank']}.json").write_text(
        json.dumps({"rank": result["rank"], "world_size": result["world_size"]}))
    if result["rank"] == 0:
        (out / "history.json").write_text(json.dumps([h["loss"] for h in result["history"]]))


if __name__ == "__main__":
    main(sys.argv[1:])
