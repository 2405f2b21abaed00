"""LRV robust instruction tuning on the world, end to end (mmrag.pipelines.lrv; resumable: a stage whose
outputs exist is skipped).

    mmrag-run-lrv                                   # data, base + tuned training, evaluations, report
    mmrag-run-lrv --only data                       # just <world>/lrv/ (the oracle generator)
    mmrag-run-lrv --only data --generator llm --backend type=local path=assets/smollm2-135m-instruct
    mmrag-run-lrv --only data --generator llm --backend type=openai url=http://127.0.0.1:8000/v1 model=m api_key_env=KEY
    mmrag-run-lrv --init output/seeing_small_cpu/stage2_instruct/final --set model.llm.config.hidden_size=128
    mmrag-run-lrv --force train_tuned --stage-set train_tuned:run.max_steps=600
    mmrag-run-lrv --only report                     # the tables from existing outputs
    mmrag-run-lrv --lrv-controls none shuffled text_only --only lrv_tuned_shuffled   # one more control

The LLM generator writes the train split only; val and test always come from the world oracle.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Sequence

from mmrag.common.cli import exit_on_user_error


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmrag.pipelines.lrv import LrvOptions

    d = LrvOptions()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=d.out, help="output folder (relative to the repository root)")
    ap.add_argument("--world", default=d.world, help="the world folder whose lrv/ the data stage writes")
    ap.add_argument("--seed", type=int, default=d.seed, help="seed of the instruction writer")
    ap.add_argument("--init", default=d.init, help="weights both models start from ('none': the config's)")
    ap.add_argument("--only", nargs="*", default=None, help="run just these stages (and the report)")
    ap.add_argument("--force", nargs="*", default=[], help="run these stages even if their outputs exist")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value for every train/eval stage")
    ap.add_argument("--stage-set", nargs="*", default=[], metavar="STAGE:KEY=VALUE", help="key=value for one stage")
    ap.add_argument("--lrv-max", type=int, default=d.lrv_max, help="first held-out LRV items (0: all)")
    ap.add_argument("--pope-max", type=int, default=d.pope_max, help="first questions of each POPE split (0: all)")
    ap.add_argument("--lrv-controls", nargs="*", default=list(d.lrv_controls),
                    help="image controls of the held-out LRV evaluation (none blank shuffled text_only)")
    ap.add_argument("--generator", choices=("oracle", "llm"), default="oracle", help="who writes the train split")
    ap.add_argument("--backend", nargs="*", default=[], metavar="KEY=VALUE",
                    help="the LLM generator's chat backend (mmrag.models.text_generator.build_chat_backend)")
    return ap.parse_args(None if argv is None else list(argv))


def backend_config(items: Sequence[str]) -> Dict[str, Any]:
    """["type=local", "batch_size=4"] -> {"type": "local", "batch_size": 4} (numbers parsed)."""
    from mmrag.common.errors import ConfigError

    cfg: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--backend {item!r}: expected KEY=VALUE, e.g. type=local")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        cfg[key] = value
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.cli.run_seeing import stage_overrides
    from mmrag.common.cli import REPO_ROOT
    from mmrag.pipelines.lrv import LrvOptions, run_lrv

    args = parse_args(argv)
    with exit_on_user_error():
        generator = {"type": args.generator}
        if args.generator == "llm":
            generator["backend"] = backend_config(args.backend)
        opt = LrvOptions(out=args.out, world=args.world, seed=args.seed,
                         init=None if str(args.init).lower() == "none" else args.init, overrides=args.overrides,
                         stage_overrides=stage_overrides(args.stage_set), lrv_max=args.lrv_max,
                         pope_max=args.pope_max, lrv_controls=tuple(args.lrv_controls), generator=generator)
        run_lrv(opt, root=REPO_ROOT, force=args.force, only=args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
