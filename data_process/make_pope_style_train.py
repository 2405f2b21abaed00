"""POPE-style yes/no questions on a COCO-format split, written as LLaVA conversations (mmrag.cli.make_pope_style_train)."""
from mmrag.cli.make_pope_style_train import main

if __name__ == "__main__":
    raise SystemExit(main())
