"""Train an experiment: python train.py --cfg-path train_configs/X.yaml [a.b=c ...]

Without --cfg-path it runs the embedded default: the tiny model on the synthetic knowledge world.
"""
import json

import mmrag  # noqa: F401  (registers every component)
from mmrag.common.cli import REPO_ROOT, exit_on_user_error, parse_args, setup_logging
from mmrag.common.config import build_config
from mmrag.common.default_setup import ensure_default_inputs
from mmrag.common.registry import RUNNERS, TASKS

DEFAULT_CFG = REPO_ROOT / "train_configs" / "gemkr_tiny_world.yaml"


def main(argv=None) -> dict:
    args = parse_args(__doc__, DEFAULT_CFG, argv)
    setup_logging()
    if args.cfg_path == str(DEFAULT_CFG):
        ensure_default_inputs()
    with exit_on_user_error():
        cfg = build_config(args.cfg_path, args.options)
        task = TASKS.get(cfg.run.task)(cfg)
        result = RUNNERS.get(cfg.run.runner)(cfg, task).train()
    if result.get("metrics"):
        print(json.dumps(result["metrics"], indent=2))
    return result


if __name__ == "__main__":
    main()
