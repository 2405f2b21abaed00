"""The embedded default GeMKR table, end to end (mmrag.cli.run_default)."""
from mmrag.cli.run_default import main

if __name__ == "__main__":
    raise SystemExit(main())
