"""SURf training-data construction, stage by stage (each resumable; the heavy ones chunkable) (mmrag.cli.surf_build_data)."""
from mmrag.cli.surf_build_data import main

if __name__ == "__main__":
    raise SystemExit(main())
