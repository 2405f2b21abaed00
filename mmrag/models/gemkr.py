"""GeMKR: the multimodal LLM with object-aware prefix tuning, trained to write knowledge clues.

Same class as every other model (MultimodalLLM); only the defaults differ: a frozen CLIP tower
with a region-feature prefix in its last blocks, CLS + 2 prefix outputs as the visual tokens,
LayerNorm + Linear into the LLM, LoRA r=8 on q/v, the knowledge-completion template.
"""
from __future__ import annotations

from omegaconf import OmegaConf

from mmrag.common.registry import MODELS
from mmrag.models.multimodal_llm import MultimodalLLM


@MODELS.register("gemkr")
class GeMKR(MultimodalLLM):
    DEFAULTS = OmegaConf.to_container(OmegaConf.merge(MultimodalLLM.DEFAULTS, {
        "arch": "gemkr",
        "region_prefix": {"enabled": True, "layers": 20, "prefix_len": 10, "num_output_tokens": 2},
        "projector": {"type": "layernorm_linear"},
        "lora": {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "conversation_template": "knowledge_completion",
        "max_txt_len": 360,
    }))
