"""Generate the synthetic multimodal knowledge world.

    python data_process/make_world.py --preset small --seed 0 --out dataset/world_small

Refuses to overwrite a non-empty folder that holds a different world (or anything else) unless --force.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from mmrag.datasets.world import WorldExistsError, generate_world, preset_names  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Generate the synthetic multimodal knowledge world.")
    parser.add_argument("--preset", choices=preset_names(), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default dataset/world_<preset>)")
    parser.add_argument("--force", action="store_true", help="replace a different world in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing images (use more for large)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out or Path("dataset") / f"world_{args.preset}"
    start = time.perf_counter()
    try:
        meta = generate_world(args.preset, args.seed, out, force=args.force,
                              progress=not args.quiet, workers=args.workers)
    except WorldExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(json.dumps({"out": str(out), "preset": args.preset, "seed": args.seed,
                      "seconds": round(seconds, 2), **meta["counts"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
