"""Save a tiny random-initialised CLIP vision tower as a local HF folder.

    python data_process/make_tiny_backbones.py --out index/tiny_clip_vision

The tiny default run points `model.vision_tower.path` at this folder, exactly as a real run points
it at a CLIP ViT-L/14 folder, so region encoding and the model read the same frozen weights.
"""
import argparse
import json
from pathlib import Path

import torch

TINY_VISION = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
               "image_size": 64, "patch_size": 8}


def save_tiny_clip_vision(out: Path, seed: int = 0, config: dict = None) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(**(config or TINY_VISION)))
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    (tmp / "mmrag_origin.json").write_text(json.dumps({"random_init_seed": seed, "config": config or TINY_VISION}))
    tmp.rename(out)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="index/tiny_clip_vision")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(save_tiny_clip_vision(Path(args.out), args.seed))


if __name__ == "__main__":
    main()
