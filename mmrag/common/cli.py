"""What train.py and eval.py share: arguments, logging, and reporting user errors in one line."""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

from mmrag.common.errors import UserError

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


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """A `UserError` (bad config, path, data, checkpoint) exits with its one-line message; any
    other exception is a bug and keeps its traceback."""
    try:
        yield
    except UserError as err:
        sys.exit(f"error: {err}")
