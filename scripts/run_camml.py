"""CaMML end to end on the small world (mmrag.cli.run_camml; see its --help)."""
from mmrag.cli.run_camml import main

if __name__ == "__main__":
    raise SystemExit(main())
