"""Write the upload file of SEED-Bench or MMBench from vqa_eval's answers file.

    mmrag-benchmark-submission --benchmark seed_bench --annotations SEED-Bench.json \
        --answers outputs/seed_eval/answers_test.jsonl --out outputs/seed_eval/seed_upload.jsonl
    mmrag-benchmark-submission --benchmark mmbench --annotations mmbench_dev_20230712.tsv \
        --answers outputs/mmbench_eval/answers_dev.jsonl --out outputs/mmbench_eval/mmbench.xlsx capitalize=true

SEED: JSON lines {question_id, prediction (the answer's first character)}. MMBench: the TSV's
question columns with a `prediction` column, as .xlsx (or .tsv by the suffix of --out).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.datasets.benchmarks import write_submission

    parser = tool_parser(__doc__)
    parser.add_argument("--benchmark", help="seed_bench | mmbench")
    parser.add_argument("--annotations", help="SEED-Bench.json or the MMBench TSV")
    parser.add_argument("--answers", help="vqa_eval's answers_<split>.jsonl")
    parser.add_argument("--out", help="the upload file")
    with exit_on_user_error():
        cfg = tool_config("benchmark_submission", parser, argv, {"benchmark": "benchmark", "annotations": "annotations",
                                                                 "answers": "answers", "out": "out"})
        report = write_submission(cfg)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
