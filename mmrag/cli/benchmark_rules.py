"""Score one answers file of a circular multiple-choice question file under every official rule
(SEED's first letter, MMBench's extraction, the lenient one) and with circular evaluation, with
bootstrap intervals (mmrag.pipelines.benchmark_rules).

    python -m mmrag.cli.benchmark_rules --questions output/benchmarks/world_circular_val/questions.jsonl \
        --answers output/dataengine_small/round_0/eval_circular/answers_val.jsonl
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.benchmark_rules import benchmark_rules

    parser = tool_parser(__doc__)
    parser.add_argument("--questions", help="the circular question file")
    parser.add_argument("--answers", help="vqa_eval's answers file for it")
    with exit_on_user_error():
        cfg = tool_config("benchmark_rules", parser, argv, {"questions": "questions", "answers": "answers"})
        report = benchmark_rules(cfg)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
