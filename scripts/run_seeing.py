"""The model that sees on the small world, end to end (mmrag.cli.run_seeing)."""
from mmrag.cli.run_seeing import main

if __name__ == "__main__":
    raise SystemExit(main())
