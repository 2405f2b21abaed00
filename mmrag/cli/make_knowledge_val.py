"""The val split of the knowledge questions: a seeded 10% of the TRAINING images, held out by image
(mmrag.datasets.knowledge.read_split_questions reads it). The world has only train and test
questions; a setting (e.g. GeMKR's step count) is chosen on this split, never on test.

    python data_process/make_knowledge_val.py        # dataset/world_small -> index/world_small/knowledge_val_images.json
    python train.py --cfg-path train_configs/gemkr_seeing_small.yaml \\
        datasets.gemkr_knowledge.val_images=index/world_small/knowledge_val_images.json evaluation.split=val
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from mmrag.common.cli import exit_on_user_error


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.datasets.knowledge import VAL_FRACTION, write_val_images

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", default="dataset/world_small/knowledge/train.json",
                        help="the training questions file")
    parser.add_argument("--out", default="index/world_small/knowledge_val_images.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=VAL_FRACTION, help="share of the training images")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        print(json.dumps(write_val_images(Path(args.questions), Path(args.out), args.seed, args.fraction)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
