"""Encode the detected regions of every image with the configured frozen vision tower (mmrag.cli.encode_region)."""
from mmrag.cli.encode_region import main

if __name__ == "__main__":
    raise SystemExit(main())
