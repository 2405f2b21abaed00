"""Train an experiment: python train.py --cfg-path train_configs/X.yaml [a.b=c ...]

Without --cfg-path it runs the embedded default: the tiny model on the synthetic knowledge world
(its inputs are prepared first, each preparation stage skipped when its outputs exist).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from mmrag.common.cli import REPO_ROOT, exit_on_user_error, parse_args, setup_logging

DEFAULT_CFG = REPO_ROOT / "train_configs" / "gemkr_tiny_world.yaml"


def main(argv: Optional[Sequence[str]] = None) -> dict:
    import mmrag  # noqa: F401  (registers every component)
    from mmrag.common.config import build_config
    from mmrag.common.registry import RUNNERS, TASKS

    args = parse_args(__doc__, DEFAULT_CFG, None if argv is None else list(argv))
    setup_logging()
    with exit_on_user_error():
        if args.cfg_path == str(DEFAULT_CFG):
            from mmrag.pipelines.default import prepare_default_inputs

            prepare_default_inputs("default")
        cfg = build_config(args.cfg_path, args.options)
        task = TASKS.get(cfg.run.task)(cfg)
        result = RUNNERS.get(cfg.run.runner)(cfg, task).train()
    if result.get("metrics"):
        print(json.dumps(result["metrics"], indent=2))
    return result


if __name__ == "__main__":
    main()
