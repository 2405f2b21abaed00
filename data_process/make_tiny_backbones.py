"""Save a tiny random-initialised CLIP vision tower as a local HF folder.

    python data_process/make_tiny_backbones.py --out index/tiny_clip_vision

The tiny default run points `model.vision_tower.path` at this folder, exactly as a real run points
it at a CLIP ViT-L/14 folder, so region encoding and the model read the same frozen weights.
"""
import argparse
import json
from pathlib import Path

import torch

TOWERS = {
    # the embedded default: 64 px, 8-px patches (64 tokens), 4 blocks of width 128
    "tiny": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
             "image_size": 64, "patch_size": 8},
    # GPU runs on the large world: 224 px, 16-px patches (196 tokens), 6 blocks of width 384
    "large": {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6, "num_attention_heads": 6,
              "image_size": 224, "patch_size": 16},
}


def save_tiny_clip_vision(out: Path, config: dict, seed: int = 0) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(**config))
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    (tmp / "mmrag_origin.json").write_text(json.dumps({"random_init_seed": seed, "config": config}))
    tmp.rename(out)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="index/tiny_clip_vision")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=sorted(TOWERS), default="tiny")
    args = p.parse_args(argv)
    print(save_tiny_clip_vision(Path(args.out), TOWERS[args.size], args.seed))


if __name__ == "__main__":
    main()
