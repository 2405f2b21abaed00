"""Build the dense multimodal retrieval database (CLIP embeddings -> faiss) for a collection (mmrag.cli.create_index)."""
from mmrag.cli.create_index import main

if __name__ == "__main__":
    raise SystemExit(main())
