"""CaMML end to end on a world (mmrag.pipelines.camml; resumable: a stage whose outputs exist is skipped).

    mmrag-run-camml                                   # small world: benchmark, database, 3 trainings, evaluations, report
    mmrag-run-camml --force train_camml eval_camml    # rerun these stages
    mmrag-run-camml --only report                     # the table from existing outputs
    mmrag-run-camml world=dataset/world_tiny out=output/camml_world_tiny 'overrides=[run.max_steps=20]'
    mmrag-run-camml --cfg my_camml.yaml               # any key of the registered defaults (run_camml)

Needs the base model's checkpoint named in the train configs (output/seeing_small_cpu/stage2_instruct:
mmrag-run-seeing) and the world CLIP (output/clip_world_small: mmrag-train clip_world_small.yaml).
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    import mmrag  # noqa: F401  (registers every component)
    from mmrag.common.cli import REPO_ROOT, setup_logging
    from mmrag.pipelines.camml import run_camml

    parser = tool_parser(__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="run just these stages (the report always runs)")
    parser.add_argument("--force", nargs="*", default=[], help="run these stages even if their outputs exist")
    setup_logging()
    with exit_on_user_error():
        args = parser.parse_intermixed_args(None if argv is None else list(argv))
        cfg = tool_config("run_camml", parser, argv, {})
        run_camml(cfg, root=REPO_ROOT, force=args.force, only=args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
