"""SURf on the small synthetic world, end to end (mmrag.pipelines.surf; resumable: a stage whose
outputs exist is skipped).

    python scripts/run_surf.py                    # every stage, then the tables -> docs/RESULTS_SURF.md
    python scripts/run_surf.py --force pope_base_rag surf_train   # run these stages again
    python scripts/run_surf.py --only report      # just write the tables from existing outputs
    python scripts/run_surf.py --base seeing_large --base-checkpoint output/seeing_large/smollm2/final \
        --pope-max 0 --surf-steps 200          # the model that sees as the base -> <out>/report.md, report.json

A forced stage first deletes its stale outputs. After a change of the base model, rerun everything
that depends on it:
    python scripts/run_surf.py --force base_train pope_base_none pope_base_rag surf_data surf_train \
        pope_surf_rag pope_surf_none vqa_base_none vqa_base_rag vqa_surf_rag vqa_surf_none
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from mmrag.common.cli import exit_on_user_error


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmrag.pipelines.surf import SurfOptions

    d = SurfOptions()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="run just these stages (and 'report')")
    ap.add_argument("--force", nargs="*", default=[], help="run these stages even if their outputs exist")
    ap.add_argument("--clip-steps", type=int, default=d.clip_steps, help="tiny CLIP training steps (batch 64)")
    ap.add_argument("--surf-samples", type=int, default=d.surf_samples, help="training conversations for SURf construction")
    ap.add_argument("--surf-k", type=int, default=d.surf_k, help="retrieved items re-answered per question")
    ap.add_argument("--pope-max", type=int, default=d.pope_max, help="first questions of each POPE split (0: all 1,938)")
    ap.add_argument("--vqa-max", type=int, default=d.vqa_max, help="first knowledge-VQA questions (0: all)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--base", default=d.base, help="tiny (trained by the pipeline) | seeing_large (the model that sees, one GPU) | "
                    "seeing_small (the small model that sees, CPU)")
    ap.add_argument("--base-checkpoint", default=None,
                    help="the base's trained final/ folder (trainable.safetensors ...): base_train is left out")
    ap.add_argument("--out", default=None, help=f"output folder (default: {d.out} for tiny, output/surf_<base> otherwise)")
    ap.add_argument("--surf-steps", type=int, default=d.surf_steps, help="SURf training steps (0: the config's own)")
    ap.add_argument("--controls", nargs="*", default=None,
                    help="image controls of the zero-shot base, e.g. shuffled blank (default: the base's)")
    ap.add_argument("--eval-batch", type=int, default=d.eval_batch, help="POPE batch size (0: the eval config's)")
    ap.add_argument("--questions", default=d.questions, help="test | val (the val presence questions, pope_val/)")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides",
                    help="key=value for every model command (training, answering, evaluation)")
    return ap.parse_args(None if argv is None else list(argv))


def options(args: argparse.Namespace):
    from mmrag.pipelines.surf import SurfOptions

    from mmrag.pipelines.surf_layout import OUT

    out = args.out or (OUT if args.base == "tiny" else f"output/surf_{args.base}")
    return SurfOptions(args.clip_steps, args.surf_samples, args.surf_k, args.pope_max, args.vqa_max, args.seed,
                       base=args.base, base_checkpoint=args.base_checkpoint, out=out, surf_steps=args.surf_steps,
                       controls=args.controls, eval_batch=args.eval_batch, questions=args.questions,
                       overrides=args.overrides)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.surf import run_surf

    args = parse_args(argv)
    with exit_on_user_error():
        run_surf(options(args), force=args.force, only=args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
