"""What the data-tool CLIs share: `--cfg FILE` and trailing `key=value` overrides beside simple flags."""
from __future__ import annotations

import argparse
from typing import Any, Dict, Mapping, Optional, Sequence

from mmrag.common.tool_config import load_tool_config


def tool_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with --cfg and key=value overrides; the tool adds its flags (default None = not given)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=None, help="YAML file of config keys (see the tool's registered defaults)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. index.type=hnsw")
    return parser


def tool_config(name: str, parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
                flags: Mapping[str, str]) -> Dict[str, Any]:
    """Parse argv (flags and overrides in any order) and load the validated config of tool `name`.

    `flags` maps a parsed attribute to the dotted config key it sets.
    """
    args = parser.parse_intermixed_args(None if argv is None else list(argv))
    given = {key: getattr(args, attr) for attr, key in flags.items()}
    return load_tool_config(name, args.cfg, args.overrides, given)
