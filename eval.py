"""Evaluate a trained experiment: python eval.py --cfg-path eval_configs/Y.yaml [a.b=c ...] (mmrag.cli.eval)."""
from mmrag.cli.eval import main

if __name__ == "__main__":
    main()
