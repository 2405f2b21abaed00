"""The knowledge questions' val split, carved from training by image (mmrag.cli.make_knowledge_val)."""
from mmrag.cli.make_knowledge_val import main

if __name__ == "__main__":
    raise SystemExit(main())
