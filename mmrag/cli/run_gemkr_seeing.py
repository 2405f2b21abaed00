"""GeMKR's results table on the seeing base (mmrag.pipelines.gemkr_seeing): SmolLM2-135M-Instruct with
LoRA on the world-trained CLIP tower, the no-regions / no-prefix ablations, the dense dual encoder and
BM25 on the same test questions, with paired 95% bootstrap intervals -> <out>/report.md, report.json.
Resumable: a stage whose outputs exist is skipped.

    mmrag-run-gemkr-seeing                          # one GPU: prepare, 3 trainings, 6 evaluations, report
    mmrag-run-gemkr-seeing --jobs 3 --threads 2     # the trainings (then the evaluations) 3 at a time
    mmrag-run-gemkr-seeing --set run.max_steps=300 evaluation.max_samples=200
    mmrag-run-gemkr-seeing --only clip_tower corpus_index regions   # just the inputs
    mmrag-run-gemkr-seeing --only report            # the table from existing evaluations

Needs `mmrag-prepare-assets smollm2` (assets/smollm2-135m-instruct) and dataset/world_small (corpus.csv,
knowledge/, images/, annotations/); the world CLIP (output/clip_world_small/final) is trained when absent.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from mmrag.common.cli import exit_on_user_error


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmrag.pipelines.gemkr_seeing import GemkrSeeingOptions

    d = GemkrSeeingOptions()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=d.out, help="output folder (relative to the repository root)")
    ap.add_argument("--prefix", default=d.prefix, help="config files train_configs/<prefix>*.yaml, eval_configs/<prefix>*.yaml")
    ap.add_argument("--only", nargs="*", default=None, help="run just these stages (and 'report' for the table)")
    ap.add_argument("--force", nargs="*", default=[], help="run these stages even if their outputs exist")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides", help="key=value for every training and evaluation")
    ap.add_argument("--clip-dir", default=d.clip_dir, help="the world CLIP's open_clip folder (trained when absent)")
    ap.add_argument("--clip-set", nargs="*", default=[], dest="clip_overrides", help="key=value for the CLIP training")
    ap.add_argument("--no-unconstrained", action="store_true", help="skip the unconstrained-decoding row")
    ap.add_argument("--quick", action="store_true", help="40 steps, 40 questions (a smoke run)")
    ap.add_argument("--jobs", type=int, default=d.jobs, help="trainings / evaluations run at once")
    ap.add_argument("--threads", type=int, default=d.threads, help="OMP_NUM_THREADS of each training / evaluation")
    ap.add_argument("--root", default=None, help="folder the stages run in and relative paths start from "
                    "(default: the repository root)")
    ap.add_argument("--region-workers", type=int, default=d.region_workers, help="image-decoding processes (regions)")
    return ap.parse_args(None if argv is None else list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.common.cli import REPO_ROOT
    from mmrag.pipelines.gemkr_seeing import GemkrSeeingOptions, run_gemkr_seeing

    a = parse_args(argv)
    opt = GemkrSeeingOptions(out=a.out, prefix=a.prefix, overrides=a.overrides, clip_dir=a.clip_dir,
                             clip_overrides=a.clip_overrides, unconstrained=not a.no_unconstrained, quick=a.quick,
                             jobs=a.jobs, threads=a.threads, region_workers=a.region_workers)
    root = Path(a.root) if a.root else REPO_ROOT
    with exit_on_user_error():
        report = run_gemkr_seeing(opt, root=root, force=a.force, only=a.only)
    if report is not None:
        print((root / a.out / "report.md").read_text())  # an absolute --out stays absolute
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
