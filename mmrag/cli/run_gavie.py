"""GAVIE on the world: grade answers with the world-oracle judge and an LLM judge, and report how far
they agree (Spearman, mean absolute difference, bias, with 95% bootstrap intervals; parse failures).

    mmrag-run-gavie --cfg eval_configs/gavie_small_local.yaml              # SmolLM2 judge, local
    mmrag-run-gavie --cfg eval_configs/gavie_small_endpoint.yaml           # an OpenAI-compatible endpoint
    mmrag-run-gavie --cfg eval_configs/gavie_small_local.yaml sample=8 answer_kinds=[reference,corrupted]
    mmrag-run-gavie --cfg eval_configs/gavie_small_local.yaml answers_file=output/my_eval/answers_val.jsonl

Writes <output_dir>/grades.jsonl and report.json (see mmrag.pipelines.gavie) and prints the tables.
Exits with status 2 when the report is incomplete (a judge request failed; the causes are printed).
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.gavie import report_table, run_gavie

    parser = tool_parser(__doc__)
    parser.add_argument("--world", help="world folder (default dataset/world_small)")
    parser.add_argument("--out", help="output folder")
    with exit_on_user_error():
        cfg = tool_config("gavie", parser, argv, {"world": "world_dir", "out": "output_dir"})
        report = run_gavie(cfg)
    print(report_table(report))
    print(f"report: {report['out']}")
    if not report["complete"]:
        for line in report["llm"]["failures"]:
            print(f"failed: {line}")
        print("incomplete: some judge requests failed (rerun: cached replies are reused)")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
