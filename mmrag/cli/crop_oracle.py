"""Can every entity's look be told apart at a resolution? Classify the world's ground-truth crops
(mmrag.pipelines.crop_oracle explains the classifiers).

    mmrag-crop-oracle --world dataset/world_small                  # 32 px and 16 px crops
    mmrag-crop-oracle --world dataset/world_small sizes=[24] classifiers=[ridge]

Prints a table per size and classifier and writes the full report (worst entities) as JSON
(default <world>/crop_oracle.json).
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.crop_oracle import report_table, run_crop_oracle

    parser = tool_parser(__doc__)
    parser.add_argument("--world", help="world folder (images/, annotations/)")
    parser.add_argument("--out", help="JSON report path")
    parser.add_argument("--quiet", action="store_const", const=False, dest="progress", help="no progress bar")
    with exit_on_user_error():
        cfg = tool_config("crop_oracle", parser, argv, {"world": "world", "out": "out", "progress": "progress"})
        report = run_crop_oracle(cfg)
    print(report_table(report))
    for key, result in report["results"].items():
        worst = ", ".join(f"{w['name']} {100 * w['accuracy']:.0f}% ({w['train_crops']} train)" for w in result["worst"][:5])
        print(f"{key}: worst entities: {worst}")
    print(f"report: {report['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
