"""Generate the synthetic multimodal knowledge world.

    python data_process/make_world.py --preset small --seed 0 --out dataset/world_small
    mmrag-make-world preset=tiny seed=4 out=/tmp/world progress=false

Refuses to overwrite a non-empty folder that holds a different world (or anything else) unless --force
(exit code 2).
"""
from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.datasets.world import WorldExistsError
    from mmrag.pipelines.prepare import make_world

    parser = tool_parser(__doc__)
    parser.add_argument("--preset")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", help="output folder (default dataset/world_<preset>)")
    parser.add_argument("--force", action="store_const", const=True, help="replace a different world in --out")
    parser.add_argument("--quiet", action="store_const", const=False, dest="progress", help="no progress bar")
    parser.add_argument("--workers", type=int, help="processes drawing images (use more for large)")
    with exit_on_user_error():
        cfg = tool_config("make_world", parser, argv, {a: a for a in ("preset", "seed", "out", "force", "progress", "workers")})
        try:
            print(json.dumps(make_world(cfg)))
        except WorldExistsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
