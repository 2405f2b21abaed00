"""The embedded default, end to end on a fresh machine: prepare the synthetic world and its indexes,
train the tiny GeMKR and its ablations, evaluate them and the baselines on the same test questions,
and print the results table (mmrag.pipelines.default).

    python scripts/run_default.py [--quick] [--setting large] [--out DIR] [--force STAGE ...]

`--quick` trains fewer steps and evaluates fewer questions (a smoke run, minutes less);
`--setting large` runs the same table on the `large` world with bigger tiny models (a GPU machine).
Resumable: a stage whose outputs exist is skipped; `--force` reruns named stages (e.g. world,
train_gemkr, eval_gemkr); every stage's command, seconds and output hashes go to <out>/stages.jsonl.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from mmrag.common.cli import exit_on_user_error


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmrag.pipelines.default import SETTINGS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="default")
    p.add_argument("--no-ablations", action="store_true", help="skip the trained ablations (no regions / no prefix)")
    p.add_argument("--out", default=None, help="default: output/<setting>")
    p.add_argument("--force", nargs="*", default=[], help="rerun these stages even if their outputs exist")
    return p.parse_args(None if argv is None else list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.default import run_default

    args = parse_args(argv)
    with exit_on_user_error():
        run_default(args.setting, args.out, quick=args.quick, ablations=not args.no_ablations, force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
