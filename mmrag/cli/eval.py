"""Evaluate a trained experiment: python eval.py --cfg-path eval_configs/Y.yaml [a.b=c ...]

The config's model.checkpoint names the folder that train.py wrote (output_dir/final). The seconds of
building the model, moving it to the GPU and evaluating go to <output_dir>/timings.json.
Without --cfg-path it evaluates the embedded default.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from mmrag.common.cli import REPO_ROOT, exit_on_user_error, parse_args, setup_logging

DEFAULT_CFG = REPO_ROOT / "eval_configs" / "gemkr_tiny_world.yaml"


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import mmrag  # noqa: F401  (registers every component)
    from mmrag.common.config import build_config

    args = parse_args(__doc__, DEFAULT_CFG, None if argv is None else list(argv))
    setup_logging()
    with exit_on_user_error():
        cfg = build_config(args.cfg_path, args.options)
        metrics = evaluate(cfg)
    print(json.dumps(metrics, indent=2))
    return metrics


def evaluate(cfg) -> dict:
    """Build the task's model (with its checkpoint), save the merged config, evaluate. The seconds of each
    phase go to <output_dir>/timings.json, so a slow run shows where its time went."""
    import torch

    from mmrag.common.config import save_config
    from mmrag.common.registry import TASKS
    from mmrag.common.timing import PhaseClock

    clock = PhaseClock()
    torch.manual_seed(cfg.run.seed)
    task = TASKS.get(cfg.run.task)(cfg)
    model = clock.time("build_model_s", task.build_model, cfg)
    if torch.cuda.is_available() and cfg.run.device != "cpu":
        model = clock.time("to_device_s", model.cuda)
    out_dir = Path(cfg.run.output_dir)
    save_config(cfg, out_dir)
    metrics = clock.time("evaluate_s", task.evaluate, model, cfg, out_dir)
    (out_dir / "timings.json").write_text(json.dumps(clock.seconds, indent=1))
    return metrics


if __name__ == "__main__":
    main()
