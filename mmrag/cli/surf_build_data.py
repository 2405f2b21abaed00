"""SURf training-data construction, stage by stage (each resumable; the heavy ones chunkable).

    S="python data_process/surf_build_data.py --cfg my_surf_data.yaml"
    $S split                       # LLaVA multi-turn -> single_turn.jsonl
    $S retrieve --chunk 0/4        # ... one process per chunk i/n; re-run a killed one as is
    $S initial  --chunk 0/4        # frozen model, question image only
    $S reanswer --chunk 0/4        # one answer per retrieved item
    $S evaluate --chunk 0/4        # tool evaluation -> labels
    $S group                       # pairs -> questions (checks every rank is there)
    $S select                      # mixed-label questions -> <work_dir>/surf_train.json
    $S all                         # everything above in one process (chunk 0/1)

Config keys (YAML via --cfg, then key=value overrides): the registered `surf_build_data` defaults
(mmrag.surf.build_data). The model is any `answerer.target` = "package.module:factory" returning
an object with `answer(batch) -> [str]`.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from mmrag.common.cli import exit_on_user_error
from mmrag.common.tool_config import load_tool_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.surf.build_data import STAGES, run
    from mmrag.surf.stage_io import parse_chunk

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--cfg", help="YAML file of config keys")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--chunk", default="0/1", help="i/n: handle the i-th of n slices (retrieve/initial/reanswer/evaluate)")
    # the stage, --chunk and overrides in any order; the stage is the first positional word
    args = parser.parse_intermixed_args(None if argv is None else list(argv))
    with exit_on_user_error():
        run(args.stage, load_tool_config("surf_build_data", args.cfg, args.overrides), parse_chunk(args.chunk))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
