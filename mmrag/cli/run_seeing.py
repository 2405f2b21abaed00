"""The model that sees on the small world, end to end (mmrag.pipelines.seeing; resumable: a stage
whose outputs exist is skipped).

    python scripts/run_seeing.py                     # stages 0-2, POPE with every image control, the report
    python scripts/run_seeing.py --force stage2_instruct pope_none   # rerun these stages
    python scripts/run_seeing.py --only report       # just the table from existing outputs
    python scripts/run_seeing.py --set run.seed=1    # a key=value for every stage
    python scripts/run_seeing.py --setting large --out output/seeing_large   # one GPU: SmolLM2 + LoRA
    python scripts/run_seeing.py --questions val     # evaluate on the val presence questions (choosing settings)
    python scripts/run_seeing.py --setting small_grounded --out output/seeing_small_grounded   # 2 CPU cores, ~10 min

Needs `mmrag-prepare-assets efficientnet_lite0` (the frozen ImageNet tower) and the world's
balanced presence questions (dataset/world_small/llava/yesno_balanced_{train,val,test}.json).
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

from mmrag.common.cli import exit_on_user_error


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmrag.pipelines.seeing import SeeingOptions

    d = SeeingOptions()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=d.out, help="output folder (relative to the repository root)")
    ap.add_argument("--only", nargs="*", default=None, help="run just these stages (the report always runs)")
    ap.add_argument("--force", nargs="*", default=[], help="run these stages even if their outputs exist")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value for every stage")
    ap.add_argument("--stage-set", nargs="*", default=[], metavar="STAGE:KEY=VALUE",
                    help="key=value for one stage, e.g. stage2_instruct:run.max_steps=300")
    ap.add_argument("--pope-max", type=int, default=d.pope_max, help="first questions of each POPE split (0: all)")
    ap.add_argument("--setting", default=d.setting, help="small (2 CPU cores) | large (one GPU, SmolLM2) | "
                    "small_grounded (2 CPU cores, one grounded stage) | large_grounded (one GPU, the large headline)")
    ap.add_argument("--questions", default=d.questions, help="test | val (the val presence questions, pope_val/)")
    return ap.parse_args(None if argv is None else list(argv))


def stage_overrides(items: Sequence[str]) -> Dict[str, List[str]]:
    """["stage2_instruct:run.max_steps=300", ...] -> {"stage2_instruct": ["run.max_steps=300"], ...}"""
    from mmrag.common.errors import ConfigError

    out: Dict[str, List[str]] = {}
    for item in items:
        stage, sep, option = item.partition(":")
        if not sep or "=" not in option:
            raise ConfigError(f"--stage-set {item!r}: expected STAGE:KEY=VALUE, e.g. stage2_instruct:run.max_steps=300")
        out.setdefault(stage, []).append(option)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.common.cli import REPO_ROOT
    from mmrag.pipelines.seeing import SeeingOptions, run_seeing

    args = parse_args(argv)
    with exit_on_user_error():
        per_stage = stage_overrides(args.stage_set)
        run_seeing(SeeingOptions(out=args.out, overrides=args.overrides, stage_overrides=per_stage,
                                 pope_max=args.pope_max, setting=args.setting, questions=args.questions),
                   root=REPO_ROOT, force=args.force, only=args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
