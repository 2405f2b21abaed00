"""An open_clip ViT image tower (e.g. the world-trained CLIP of `train_configs/clip_world_small.yaml`)
rewritten as a transformers CLIPVisionModel folder, so `vision_tower: {type: hf_clip, path: ...}`
loads it and GeMKR's region prefix, which runs the tower block by block, can adapt it.

Only the plain open_clip ViT is accepted (class token, exact GELU, no layer scale, no attention
pooling): the layouts whose blocks compute exactly what CLIPVisionModel's do. Anything else is
refused by name rather than converted into a different function.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import torch

from mmrag.common.errors import ConfigError


def _check_plain_vit(visual) -> None:
    block = visual.transformer.resblocks[0]
    problems = [what for what, bad in (
        ("no class token", getattr(visual, "class_embedding", None) is None),
        ("attention pooling", getattr(visual, "attn_pool", None) is not None),
        ("layer scale", not isinstance(block.ls_1, torch.nn.Identity)),
        ("a GELU other than the exact one", type(block.mlp.gelu) is not torch.nn.GELU
         or getattr(block.mlp.gelu, "approximate", "none") != "none"),
        ("extra attention norms", hasattr(block.attn, "ln_inner") or getattr(block, "ln_attn", None) is not None),
    ) if bad]
    if problems:
        raise ConfigError(f"open_clip tower has {', '.join(problems)}: only a plain ViT converts to a CLIPVisionModel")


def vision_config(visual) -> Dict[str, Any]:
    """The CLIPVisionConfig arguments of an open_clip VisionTransformer."""
    block = visual.transformer.resblocks[0]
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
    return {"hidden_size": visual.transformer.width, "intermediate_size": block.mlp.c_fc.out_features,
            "num_hidden_layers": len(visual.transformer.resblocks), "num_attention_heads": block.attn.num_heads,
            "image_size": int(size), "patch_size": int(patch), "hidden_act": "gelu",
            "layer_norm_eps": visual.ln_pre.eps, "num_channels": 3}


def vision_state_dict(visual) -> Dict[str, torch.Tensor]:
    """open_clip visual weights under CLIPVisionModel's trunk names (q/k/v split from in_proj)."""
    src = visual.state_dict()
    out = {"embeddings.class_embedding": src["class_embedding"],
           "embeddings.patch_embedding.weight": src["conv1.weight"],
           "embeddings.position_embedding.weight": src["positional_embedding"]}
    for side in ("weight", "bias"):
        out[f"pre_layrnorm.{side}"] = src[f"ln_pre.{side}"]
        out[f"post_layernorm.{side}"] = src[f"ln_post.{side}"]
    for i in range(len(visual.transformer.resblocks)):
        a, b = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for side in ("weight", "bias"):
            for name, part in zip(("q_proj", "k_proj", "v_proj"), src[f"{a}attn.in_proj_{side}"].chunk(3, dim=0)):
                out[f"{b}self_attn.{name}.{side}"] = part
            for old, new in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                out[f"{b}{new}.{side}"] = src[f"{a}{old}.{side}"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def convert_open_clip_vision(visual, out_dir: str | Path, origin: Dict[str, Any] | None = None) -> Path:
    """Write `visual` (an open_clip VisionTransformer) as a CLIPVisionModel folder; returns it."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    _check_plain_vit(visual)
    model = CLIPVisionModel(CLIPVisionConfig(**vision_config(visual)))
    trunk = getattr(model, "vision_model", model)  # transformers 4.x nests the trunk
    trunk.load_state_dict(vision_state_dict(visual), strict=True)
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    model.eval().save_pretrained(tmp)
    (tmp / "mmrag_origin.json").write_text(json.dumps({"converted_from": "open_clip", **(origin or {})}))
    tmp.rename(out)
    return out


def convert_open_clip_folder(folder: str | Path, out_dir: str | Path) -> Path:
    """An open_clip folder (open_clip_config.json + open_clip_model.safetensors, as clip_pretrain
    saves it) -> its image tower as a CLIPVisionModel folder."""
    from mmrag.common.paths import require_path
    from mmrag.models.clip import load_open_clip

    folder = Path(folder)
    config = require_path("open_clip folder", folder / "open_clip_config.json", "open_clip config (clip_pretrain output)")
    weights = require_path("open_clip folder", folder / "open_clip_model.safetensors", "open_clip weights")
    arch = json.loads(Path(config).read_text())["model_cfg"]
    model = load_open_clip(arch=arch, weights=weights)
    return convert_open_clip_vision(model.visual, out_dir, {"source": str(folder)})
