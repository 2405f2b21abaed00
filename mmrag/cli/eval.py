"""Evaluate a trained experiment: python eval.py --cfg-path eval_configs/Y.yaml [a.b=c ...]

The config's model.checkpoint names the folder that train.py wrote (output_dir/final).
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
    """Build the task's model (with its checkpoint), save the merged config, evaluate."""
    import torch

    from mmrag.common.config import save_config
    from mmrag.common.registry import TASKS

    torch.manual_seed(cfg.run.seed)
    task = TASKS.get(cfg.run.task)(cfg)
    model = task.build_model(cfg)
    if torch.cuda.is_available() and cfg.run.device != "cpu":
        model = model.cuda()
    out_dir = Path(cfg.run.output_dir)
    save_config(cfg, out_dir)
    return task.evaluate(model, cfg, out_dir)


if __name__ == "__main__":
    main()
