"""Train the bench's GeMKR shape through `python train.py`'s own code path (mmrag.cli.train.main), for
the `runner` recipe of bench_train_step.py and the torchrun figures of train_py_recipe.py: the task
`bench_random_rows` (rows of the bench's shape: random token ids, the visual placeholders at IMAGE_AT, the
last `target_tokens` as targets, random pixels and region features), the experiment config, the timing
from the Runner's records (see train_py_recipe.py's doc)."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from mmrag.common.registry import TASKS
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.tasks.base import Task


class RandomRows(Dataset):
    def __init__(self, shape: Dict[str, Any], n_visual: int, vocab: int) -> None:
        self.shape, self.n_visual, self.vocab = shape, n_visual, vocab
        self.name = "random_rows"

    def __len__(self) -> int:
        return int(self.shape["rows"])

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        s, gen = self.shape, torch.Generator().manual_seed(i)
        ids = torch.randint(3, self.vocab, (s["seq_len"],), generator=gen)
        ids[0], ids[-1] = 1, 2
        ids[s["image_at"]:s["image_at"] + self.n_visual] = IMAGE_PLACEHOLDER_ID
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-s["target_tokens"]:] = ids[-s["target_tokens"]:]
        size = s["image_size"]
        return {"input_ids": ids, "labels": labels, "pixel_values": torch.randn(3, size, size, generator=gen),
                "regions": torch.randn(s["regions"], s["region_dim"], generator=gen)}


@TASKS.register("bench_random_rows")
class RandomRowsTask(Task):
    DEFAULTS: Dict[str, Any] = {"run": {}, "evaluation": {"rows": 4096, "seq_len": 360, "target_tokens": 20,
                                                           "image_at": 32, "image_size": 224, "regions": 10,
                                                           "region_dim": 1024}}

    def build_processor(self, cfg, model):
        return model  # rows are already token ids: nothing to tokenize

    def build_train_datasets(self, cfg, model):
        lm = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
        rows = RandomRows(OmegaConf.to_container(cfg.evaluation), model.num_visual_tokens, lm.config.vocab_size)
        return {"random_rows": rows}, {"random_rows": 1.0}

    def collate_fn(self, processor):
        def collate(dataset, indices):
            rows = [dataset[i] for i in indices]
            batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            return batch

        return collate

    def evaluate(self, model, cfg, out_dir):
        return {}


def run_config(shape: Dict[str, Any], model_cfg: Dict[str, Any], recipe, out_dir: Path, lr: float,
               device: torch.device, distributed: str = "ddp", world: int = 1,
               fsdp_frozen: str = "replicate") -> Dict[str, Any]:
    """The experiment YAML's content: the bench's model, run options equal to recipe `ours`."""
    steps, warmup = shape["steps"], math.ceil(shape["warmup"] / shape["steps"]) * shape["steps"]
    evaluation = {"seq_len": shape["seq_len"], "target_tokens": shape["target_tokens"], "image_at": 32,
                  "image_size": shape["vision"]["image_size"], "regions": shape["prefix"]["regions"],
                  "region_dim": shape["vision"]["hidden_size"], "rows": shape["batch"] * (warmup + steps)}
    run = {"task": "bench_random_rows", "output_dir": str(out_dir), "batch_size": shape["batch"] * world,
           "max_steps": warmup + steps, "log_every": steps, "save_every": warmup + steps, "keep_checkpoints": 1,
           "param_dtype": "bfloat16", "amp": "no", "init_lr": lr, "min_lr": lr, "warmup_steps": 0,
           "compile": recipe.compile_scope, "compile_mode": recipe.compile_mode, "num_workers": 4,
           "evaluate": False, "progress": False, "device": device.type, "distributed": distributed,
           "fsdp_frozen": fsdp_frozen}
    evaluation["rows"] *= world
    return {"model": model_cfg, "datasets": {}, "run": run, "evaluation": evaluation}


def run_train_py(shape: Dict[str, Any], model_cfg: Dict[str, Any], recipe, lr: float,
                 device: torch.device, distributed: str = "ddp", world: int = 1,
                 work_dir: Optional[str] = None, fsdp_frozen: str = "replicate") -> Dict[str, Any]:
    """Train through mmrag.cli.train.main (what `python train.py --cfg-path X.yaml` runs); the timing.
    Under torchrun every process calls this with the same `work_dir` (a shared folder for the run)."""
    from mmrag.cli.train import main as train_main

    with tempfile.TemporaryDirectory() as own_tmp:
        tmp = work_dir or own_tmp
        cfg = run_config(shape, model_cfg, recipe, Path(tmp) / "run", lr, device, distributed, world, fsdp_frozen)
        path = Path(tmp) / f"bench_runner_{os.environ.get('RANK', '0')}.yaml"
        OmegaConf.save(OmegaConf.create(cfg), path)
        result = train_main(["--cfg-path", str(path)])
    records = result["history"]
    if len(records) < 2:
        raise RuntimeError(f"the runner wrote {len(records)} record(s); expected warm-up and timed ones")
    seconds = (records[-1]["elapsed_s"] - records[-2]["elapsed_s"]) / records[-1]["steps"]
    return {"step_s": seconds, "final_loss": records[-1]["loss"], "first_record_s": records[0]["elapsed_s"],
            "run": cfg["run"]}
