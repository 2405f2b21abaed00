"""Train an experiment: python train.py --cfg-path train_configs/X.yaml [a.b=c ...] (mmrag.cli.train)."""
from mmrag.cli.train import main

if __name__ == "__main__":
    main()
