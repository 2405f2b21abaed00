"""Save a tiny random-initialised CLIP vision tower as a local HF folder.

    python data_process/make_tiny_backbones.py --out index/tiny_clip_vision [--size tiny|large]

The tiny default run points `model.vision_tower.path` at this folder, exactly as a real run points
it at a CLIP ViT-L/14 folder, so region encoding and the model read the same frozen weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.prepare import TOWERS, save_tiny_clip_vision

    parser = tool_parser(__doc__)
    parser.add_argument("--out")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--size", help=f"one of {', '.join(sorted(TOWERS))}")
    with exit_on_user_error():
        cfg = tool_config("make_tiny_backbones", parser, argv, {"out": "out", "seed": "seed", "size": "size"})
        print(save_tiny_clip_vision(Path(cfg["out"]), TOWERS[cfg["size"]], cfg["seed"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
