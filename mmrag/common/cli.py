"""What train.py and eval.py share: arguments, logging, the embedded default experiment."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_args(description: str, default_cfg: Path, argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg-path", default=None,
                        help=f"experiment YAML (default: the embedded tiny experiment {default_cfg})")
    parser.add_argument("--options", nargs="+", default=[], help="overrides a.b.c=value")
    parser.add_argument("overrides", nargs="*", help="overrides a.b.c=value (same as --options)")
    args = parser.parse_args(argv)
    args.cfg_path = args.cfg_path or str(default_cfg)
    args.options = list(args.options) + list(args.overrides)
    return args


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def user_errors() -> tuple:
    """Exceptions that describe a problem with the user's config or data in one line: the entry
    points print them without a traceback."""
    from mmrag.common.config import ConfigError
    from mmrag.datasets.formats import DataFormatError
    from mmrag.datasets.multimodal_dataset import MissingImageError
    from mmrag.datasets.region_store import RegionStoreError
    from mmrag.models.image_processing import ImageReadError
    from mmrag.models.paths import MissingPathError
    from mmrag.models.tokenization import ImageCountError
    from mmrag.retrieval.corpus_index import CorpusIndexError
    from mmrag.runners.checkpoint import CorruptCheckpointError

    return (ConfigError, KeyError, MissingPathError, DataFormatError, MissingImageError, RegionStoreError,
            ImageReadError, ImageCountError, CorpusIndexError, CorruptCheckpointError)
