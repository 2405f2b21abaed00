"""Convert a DataEngine benchmark from its official files into vqa_eval's question file
(mmrag.datasets.benchmarks explains the layouts and the scorer of each).

    mmrag-convert-benchmark --benchmark okvqa --questions OpenEnded_mscoco_val2014_questions.json \
        --annotations mscoco_val2014_annotations.json --out-dir eval_data/okvqa
    mmrag-convert-benchmark --benchmark mmbench --questions mmbench_dev_20230712.tsv --out-dir eval_data/mmbench
    mmrag-convert-benchmark --benchmark seed_bench --questions SEED-Bench.json --out-dir eval_data/seed prompt_style=minigpt_v2

Output: <out_dir>/questions.jsonl (+ <out_dir>/images/ for MMBench); then point an eval config's
evaluation.question_file there (eval_configs/dataengine_*.yaml).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.datasets.benchmarks import convert_benchmark

    parser = tool_parser(__doc__)
    parser.add_argument("--benchmark", help="okvqa | vizwiz | vsr | seed_bench | mmbench")
    parser.add_argument("--questions", help="the benchmark's file (OKVQA: questions JSON; MMBench: TSV)")
    parser.add_argument("--annotations", help="OKVQA: the annotations JSON")
    parser.add_argument("--out-dir", help="output folder")
    with exit_on_user_error():
        cfg = tool_config("convert_benchmark", parser, argv, {"benchmark": "benchmark", "questions": "questions",
                                                              "annotations": "annotations", "out_dir": "out_dir"})
        report = convert_benchmark(cfg)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
