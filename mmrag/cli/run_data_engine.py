"""MLLM-DataEngine on a world: evaluate -> weak types -> targeted generation -> retrain, round after
round, with the uniform and no-in-context controls, then the report (mmrag.pipelines.data_engine).

    mmrag-run-data-engine --cfg train_configs/dataengine_small_loop.yaml
    mmrag-run-data-engine --cfg train_configs/dataengine_small_loop.yaml arms=[targeted] rounds=3
    mmrag-run-data-engine --cfg train_configs/dataengine_small_loop.yaml --force targeted_r1_generate
    mmrag-run-data-engine --cfg train_configs/dataengine_llm_local.yaml     # SmolLM2 writes the questions
    mmrag-run-data-engine --cfg train_configs/dataengine_small_loop.yaml generator.type=llm \
        generator.backend.type=openai generator.backend.url=http://127.0.0.1:8000/v1 generator.backend.model=NAME

Resumable: a stage whose outputs exist is skipped; a round stopped by a failing endpoint keeps its
finished chunks and resumes on the next run. Writes <out>/report.md, report.json, report.png.
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.common.cli import REPO_ROOT
    from mmrag.pipelines.data_engine import DataEngine

    parser = tool_parser(__doc__)
    parser.add_argument("--force", nargs="*", default=[], help="run these stages even if their outputs exist")
    parser.add_argument("--only", nargs="*", default=None, help="run just these stages (the report always runs)")
    with exit_on_user_error():
        cfg = tool_config("data_engine", parser, argv, {})
        args = parser.parse_intermixed_args(None if argv is None else list(argv))
        result = DataEngine(cfg, REPO_ROOT).run(force=args.force, only=args.only)
        print(result["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
