"""A small task over generated images for runner tests; also a torchrun entry point:
    torchrun --nproc_per_node 2 tests/runners/toy_task.py OUT_DIR MAX_STEPS
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mmrag  # noqa: E402,F401
from mmrag.common.registry import MODELS  # noqa: E402
from mmrag.datasets.multimodal_dataset import ConversationDataset, collate_indices  # noqa: E402
from mmrag.runners.runner import Runner  # noqa: E402
from mmrag.tasks.base import Task  # noqa: E402

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

    def build_train_datasets(self, cfg, model):
        return {"toy": ConversationDataset(self.records, model.image_processor, "toy")}, {"toy": 1.0}

    def collate_fn(self, model):
        return lambda ds, idx: collate_indices(model, ds, idx)

    def evaluate(self, model, cfg, out_dir):
        return {}


def toy_config(model_cfg: dict, out_dir: Path, **run) -> OmegaConf:
    model = OmegaConf.merge(MODELS.get("mm_llm").default_config(model_cfg), model_cfg)
    run_cfg = {**Runner.default_config(), "output_dir": str(out_dir), "batch_size": 4, "init_lr": 1e-2,
               "warmup_steps": 2, "progress": False, "evaluate": False, "task": "toy", **run}
    return OmegaConf.create({"model": model, "datasets": {}, "run": run_cfg, "evaluation": {}})


def train(model_cfg: dict, out_dir: Path, images: Path, **run):
    cfg = toy_config(model_cfg, out_dir, **run)
    return Runner(cfg, ToyTask(cfg, make_records(images))).train()


if __name__ == "__main__":
    from conftest import TINY_LLM, TINY_TOWER  # noqa: E402

    out, steps = Path(sys.argv[1]), int(sys.argv[2])
    cfg = {"arch": "mm_llm", "vision_tower": {"type": "hf_clip", "config": TINY_TOWER, "select_layer": -1},
           "llm": {"config": TINY_LLM}, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}}
    result = train(cfg, out, out / "images", max_steps=steps, device="cpu")
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        (out / "history.json").write_text(json.dumps([h["loss"] for h in result["history"]]))
