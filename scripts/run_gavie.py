"""GAVIE judge reliability on the world (mmrag.cli.run_gavie)."""
from mmrag.cli.run_gavie import main

if __name__ == "__main__":
    raise SystemExit(main())
