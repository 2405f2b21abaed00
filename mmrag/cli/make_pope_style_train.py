"""POPE-style yes/no questions on a COCO-format split, written as LLaVA conversations
(mmrag.datasets.pope_yesno explains why and how).

    python data_process/make_pope_style_train.py                       # the small world, train + test
    python data_process/make_pope_style_train.py --world dataset/world_small --splits train \
        --per-image 2 --seed 0

Output: <world>/llava/yesno_<split>.json.
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.datasets.pope_yesno import make_yes_no_files

    parser = tool_parser(__doc__)
    parser.add_argument("--world", help="world folder (annotations/, llava/)")
    parser.add_argument("--splits", nargs="+", help="splits to build")
    parser.add_argument("--per-image", type=int, help="yes questions per image (as many no questions)")
    parser.add_argument("--seed", type=int)
    with exit_on_user_error():
        cfg = tool_config("make_pope_style_train", parser, argv,
                          {"world": "world", "splits": "splits", "per_image": "per_image", "seed": "seed"})
        reports = make_yes_no_files(cfg)
    for report in reports:
        print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
