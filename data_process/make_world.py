"""Generate the synthetic multimodal knowledge world (mmrag.cli.make_world)."""
from mmrag.cli.make_world import main

if __name__ == "__main__":
    raise SystemExit(main())
