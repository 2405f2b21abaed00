"""LRV robust instruction tuning on the world, end to end (mmrag.cli.run_lrv)."""
from mmrag.cli.run_lrv import main

if __name__ == "__main__":
    raise SystemExit(main())
