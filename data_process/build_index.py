"""Build the suffix-array corpus index used by constrained generative retrieval (GeMKR) (mmrag.cli.build_index)."""
from mmrag.cli.build_index import main

if __name__ == "__main__":
    raise SystemExit(main())
