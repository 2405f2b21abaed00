"""SURf on the small synthetic world, end to end (mmrag.cli.run_surf)."""
from mmrag.cli.run_surf import main

if __name__ == "__main__":
    raise SystemExit(main())
