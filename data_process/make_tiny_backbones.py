"""Save a tiny random-initialised CLIP vision tower as a local HF folder (mmrag.cli.make_tiny_backbones)."""
from mmrag.cli.make_tiny_backbones import main

if __name__ == "__main__":
    raise SystemExit(main())
